"""A camera's recent encoded packets, kept without decoding, and the clip jobs cut from them.

The source calls :meth:`PacketRing.on_packet` for every demuxed video packet. The ring copies the
packet's bytes and timing (never a reference into the demuxer) and keeps enough history to go back
``keep_s`` seconds *to a keyframe*. :meth:`PacketRing.request_clip` starts collecting a clip around a
stream time: packets from the keyframe at or before ``at - pre_roll_s`` up to ``at + post_roll_s``;
when the post-roll has arrived (or the stream ends) the finished :class:`ClipJob` goes to the
``on_ready`` callback, normally :meth:`evidence.clip.ClipWriter.submit`.

Times are seconds on the stream's own clock: ``packet.pts * time_base`` (``dts`` when pts is missing).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One compressed video packet, detached from the demuxer."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool
    time_base: Fraction

    @property
    def time(self) -> float:
        """Presentation time in seconds (decode time when the packet has no pts)."""
        ts = self.pts if self.pts is not None else self.dts
        return float((ts or 0) * self.time_base)

    @property
    def end_time(self) -> float:
        return self.time + float(self.duration * self.time_base)

    @classmethod
    def from_av(cls, packet: av.Packet, time_base: Fraction, keyframe: bool) -> EncodedPacket:
        return cls(bytes(packet), packet.pts, packet.dts, int(packet.duration or 0), keyframe,
                   Fraction(packet.time_base or time_base))


def h264_has_idr(data: bytes) -> bool:
    """True if an Annex-B H.264 access unit holds an IDR slice (NAL unit type 5)."""
    i = data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        if data[i + 3] & 0x1F == 5:
            return True
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


def is_keyframe(packet: av.Packet, codec: str) -> bool:
    """The packet's key flag, or for H.264 an IDR slice in its bytes (RTP demuxers leave the flag off)."""
    return bool(packet.is_keyframe) or (codec == "h264" and h264_has_idr(bytes(packet)[:4096]))


@dataclass(frozen=True, slots=True)
class StreamTemplate:
    """Codec parameters of one stream connection, held as a tiny in-memory NUT file.

    A live demuxer's stream dies with its connection; the template does not, so a clip can be
    written on another thread after the source has reconnected. The NUT bytes carry the codec's
    extradata (SPS/PPS for H.264) and the stream time base; one keyframe rides along because a
    demuxer needs a packet to read the header back.
    """

    codec: str
    width: int
    height: int
    time_base: Fraction
    extradata: bytes
    nut: bytes

    @classmethod
    def from_stream(cls, stream: Any, keyframe: av.Packet) -> StreamTemplate:
        buf = io.BytesIO()
        with av.open(buf, "w", format="nut") as out:
            ostream = out.add_stream_from_template(stream)
            copy = av.Packet(bytes(keyframe))
            copy.pts, copy.dts = 0, 0
            copy.time_base = stream.time_base
            copy.is_keyframe = True
            copy.stream = ostream
            out.mux(copy)
        ctx = stream.codec_context
        return cls(codec=ctx.name, width=int(ctx.width), height=int(ctx.height),
                   time_base=Fraction(stream.time_base), extradata=bytes(ctx.extradata or b""),
                   nut=buf.getvalue())

    def open_stream(self) -> tuple[Any, Any]:
        """Open the template; returns (container, video stream). Close the container after use."""
        container = av.open(io.BytesIO(self.nut), "r", format="nut")
        return container, container.streams.video[0]


@dataclass(slots=True)
class ClipJob:
    """Everything needed to write one clip, with no reference to a live demuxer."""

    incident_id: str
    camera_id: str
    at: float
    pre_roll_s: float
    post_roll_s: float
    dest: Path
    template: StreamTemplate
    packets: list[EncodedPacket] = field(default_factory=list)
    truncated: bool = False
    """True when the stream ended (or reconnected) before the post-roll was complete."""
    on_done: Callable[[Any], None] | None = None

    @property
    def end(self) -> float:
        return self.at + self.post_roll_s


class PacketRing:
    """Per-camera ring of encoded packets; thread-safe (source thread writes, analysis thread asks)."""

    def __init__(self, camera_id: str, keep_s: float, on_ready: Callable[[ClipJob], Any]) -> None:
        if keep_s <= 0:
            raise ValueError(f"PacketRing({camera_id!r}): keep_s must be > 0, got {keep_s}")
        self.camera_id = camera_id
        self.keep_s = keep_s
        self._on_ready = on_ready
        self._lock = threading.Lock()
        self._packets: deque[EncodedPacket] = deque()
        self._template: StreamTemplate | None = None
        self._stream_key: tuple[int, bytes] | None = None
        self._pending: list[ClipJob] = []
        self.generation = 0
        """Counts stream connections seen; a new one empties the ring."""

    # -- source side ---------------------------------------------------------------------------
    def on_packet(self, packet: av.Packet, stream: Any) -> None:
        """Hook for the source: called with every demuxed packet of the video stream."""
        if packet.size == 0 or (packet.pts is None and packet.dts is None):
            return  # flush/empty packets carry nothing to keep
        extradata = bytes(stream.codec_context.extradata or b"")
        stream_key = (id(stream), extradata)
        ready: list[ClipJob] = []
        with self._lock:
            key = is_keyframe(packet, stream.codec_context.name)
            if stream_key != self._stream_key or self._went_back(packet, stream):
                ready += self._new_generation(stream_key)
            if self._template is None:
                if not key:
                    return  # nothing decodes before the first keyframe of a connection
                self._template = StreamTemplate.from_stream(stream, packet)
            enc = EncodedPacket.from_av(packet, Fraction(stream.time_base), key)
            self._packets.append(enc)
            self._trim()
            for job in self._pending:
                job.packets.append(enc)
            done = [j for j in self._pending if enc.time >= j.end]
            self._pending = [j for j in self._pending if enc.time < j.end]
            ready += done
        for job in ready:
            self._on_ready(job)

    def _went_back(self, packet: av.Packet, stream: Any) -> bool:
        """Time jumped back by more than a second: a new connection reusing the old stream's id."""
        if not self._packets:
            return False
        ts = packet.pts if packet.pts is not None else packet.dts
        return float((ts or 0) * Fraction(stream.time_base)) < self._packets[-1].time - 1.0

    def end_of_stream(self) -> None:
        """The source ended or lost its connection: hand over pending clips as they are."""
        with self._lock:
            ready = self._new_generation(None)
        for job in ready:
            self._on_ready(job)

    def _new_generation(self, key: tuple[int, bytes] | None) -> list[ClipJob]:
        ready = [j for j in self._pending if j.packets]
        for job in ready:
            job.truncated = True
        dropped = len(self._pending) - len(ready)
        if dropped:
            log.warning("clip request(s) lost: stream ended before any packet arrived",
                        extra={"camera": self.camera_id, "count": dropped})
        self._pending = []
        self._packets.clear()
        self._template = None
        self._stream_key = key
        self.generation += 1
        return ready

    def _trim(self) -> None:
        """Drop packets older than the keyframe at or before ``newest - keep_s``."""
        horizon = self._packets[-1].time - self.keep_s
        # find the last keyframe at or before the horizon; everything before it can go
        cut = 0
        for i, p in enumerate(self._packets):
            if p.time > horizon:
                break
            if p.keyframe:
                cut = i
        for _ in range(cut):
            self._packets.popleft()

    # -- analysis side -------------------------------------------------------------------------
    def request_clip(self, incident_id: str, at: float, pre_roll_s: float, post_roll_s: float,
                     dest: Path, on_done: Callable[[Any], None] | None = None) -> bool:
        """Start a clip around stream time ``at``. Returns False when the ring holds nothing yet."""
        with self._lock:
            if self._template is None or not self._packets:
                log.warning("no packets buffered: clip not possible",
                            extra={"camera": self.camera_id, "incident": incident_id})
                return False
            job = ClipJob(incident_id, self.camera_id, at, pre_roll_s, post_roll_s, dest,
                          self._template, list(_from_keyframe_before(self._packets, at - pre_roll_s)),
                          on_done=on_done)
            complete = bool(job.packets) and job.packets[-1].time >= job.end
            if complete:
                job.packets = [p for p in job.packets if p.time <= _first_time_at_or_after(job.packets,
                                                                                          job.end)]
            else:
                self._pending.append(job)
        if complete:
            self._on_ready(job)
        return True

    @property
    def buffered_s(self) -> float:
        with self._lock:
            if not self._packets:
                return 0.0
            return self._packets[-1].time - self._packets[0].time

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


def _from_keyframe_before(packets: Iterable[EncodedPacket], t: float) -> list[EncodedPacket]:
    """Packets from the last keyframe at or before ``t`` (or the first keyframe held) onwards."""
    items = list(packets)
    start = None
    for i, p in enumerate(items):
        if p.keyframe and (p.time <= t or start is None):
            start = i
        if p.time > t and start is not None:
            break
    return items[start:] if start is not None else []


def _first_time_at_or_after(packets: list[EncodedPacket], t: float) -> float:
    for p in packets:
        if p.time >= t:
            return p.time
    return packets[-1].time
