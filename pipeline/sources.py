"""Camera sources: RTSP streams and video files behind one interface, both decoded with PyAV.

A :class:`Source` owns one reader thread and is a state machine::

    CONNECTING -> STREAMING -> (stall / error / server gone) -> RECONNECTING -> STREAMING ...
    any state -> STOPPED              (stop() was called, or a file ended cleanly)
    CONNECTING / STREAMING -> FAILED  (files only: unreadable, corrupt or truncated; terminal)

The watchdog lives in the reader: no decoded frame for ``stall_timeout_s`` (or a read that
blocks that long) -> close and reconnect after a capped exponential backoff. A live stream never
gives up; a file never retries.

Decoding is as cheap as the analysis rate allows: when the analysis interval (1/analysis_fps) is
longer than the stream's keyframe interval (measured from the packets), the decoder is told to
skip every non-keyframe (``skip_frame = "NONKEY"``; non-key packets are not even handed to it) and
to skip the deblocking filter of the keyframes it decodes (nothing is predicted from them);
otherwise every frame is decoded and frames are dropped by time
(:class:`pipeline.sampler.TimeSampler`). Until two keyframes have been seen
(or one analysis interval has passed) each new connection holds its packets back undecoded, so a
keyframe-only camera never decodes its first GOP in full. Only sampled frames are converted to
BGR arrays. At the end of a file the decoder is flushed, so no held-back frame is lost. A
live connection that must leave keyframe-only decoding (the keyframe interval grew past the analysis
interval) reconnects, so its new decoder deblocks every frame again; a file goes on without it.

Reader threads run ``READER_NICE`` steps nicer than the process: when every core is busy, the
inference and analysis threads come first (a frame waiting for them ages; a reader a few
milliseconds late only leaves a packet in its socket buffer a little longer).

The reader never blocks on its consumer: ``on_frame`` must return at once (the worker hands it
:meth:`pipeline.sampler.LatestFrameSlot.put`). ``on_packet(packet, stream)`` sees every encoded
video packet before decoding, for evidence ring buffers; :attr:`Source.stream_info` carries the
codec parameters and time base of the current connection.

The stream URL's password never appears in logs, exceptions or metrics: everything user-facing
uses :attr:`Source.safe_url` and error texts pass through :func:`core.redact.redact_text`.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import av.error

from camera_config.schema import Camera, Watchdog
from core.errors import SourceEnded, SourceError
from core.redact import redact_text, redact_url
from core.types import Frame
from pipeline.metrics import CameraMetrics
from pipeline.sampler import TimeSampler

log = logging.getLogger("patrol.source")

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})
TRUNCATION_SLACK_S = 1.0
"""A file whose last frame ends more than this before its declared duration counts as truncated."""
MAX_FILE_DECODE_ERRORS = 25
MAX_PROBE_PACKETS = 600
"""Most packets held back undecoded while the keyframe interval is being measured."""


READER_NICE = 5
"""Reader threads run this much nicer than the rest of the process (Linux: per thread). Inference
and analysis come first: with every core busy, a frame waiting for a detector ages, while a reader
a few milliseconds late only delays a packet it has plenty of buffer for."""


def lower_priority(nice: int) -> None:
    """Make the calling thread ``nice`` steps nicer; best effort (a no-op where unsupported)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)
    except (AttributeError, OSError):
        log.debug("cannot lower the priority of thread %s", threading.current_thread().name)


class SourceState(enum.StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


FrameCallback = Callable[[Frame], None]
PacketListener = Callable[[av.Packet, Any], None]
"""``on_packet(packet, stream)``: called in the reader thread for every video packet; must be quick."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Codec parameters of the current connection, for remuxing packets into evidence clips.

    ``stream`` is the PyAV video stream itself (valid while this connection lasts), e.g. for
    ``output.add_stream_from_template(stream)``.
    """

    codec_name: str
    width: int
    height: int
    time_base: Fraction
    average_rate: Fraction | None
    extradata: bytes | None
    stream: Any


class RedactedCause(Exception):
    """Stands in as ``__cause__`` for a library error whose text carried a credential-bearing URL."""


def is_live_url(url: str) -> bool:
    """True for network streams (reconnect forever), False for local files (end, never retry)."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    return scheme in LIVE_SCHEMES


def _safe_cause(exc: BaseException) -> BaseException:
    text = str(exc)
    clean = redact_text(text)
    return exc if clean == text else RedactedCause(f"{type(exc).__name__}: {clean}")


def _describe(exc: BaseException) -> str:
    """A one-line, credential-free reason from a PyAV/FFmpeg error."""
    if isinstance(exc, av.error.FFmpegError):
        reason = exc.strerror or type(exc).__name__
        return redact_text(f"{reason} ({type(exc).__name__})")
    return redact_text(f"{exc} ({type(exc).__name__})")


def _codec_label(stream: Any) -> str:
    """The codec's name where the container names it; PyAV keeps no name for a codec it cannot decode."""
    for attr in ("codec_name", "codec_tag"):
        value = getattr(stream, attr, None)
        if isinstance(value, str) and value.strip("\x00 "):
            return repr(value)
    return "(unknown to FFmpeg)"


def backoff_delay(watchdog: Watchdog, failures: int) -> float:
    """Seconds to wait before reconnect attempt number ``failures`` (1, 2, ...): capped doubling.

    ``failures`` counts consecutive connections that produced no frame; one that streamed resets it.
    """
    exponent = min(max(failures, 1) - 1, 30)
    return float(min(watchdog.backoff_initial_s * 2.0 ** exponent, watchdog.backoff_max_s))


class KeyframeClock:
    """Measures the keyframe interval (seconds) from keyframe packet timestamps.

    Keeps the last few intervals and reports the largest, so decoding switches to keyframes-only
    only when every recent gap between keyframes is shorter than the analysis interval.
    """

    def __init__(self, keep: int = 4) -> None:
        self._last: float | None = None
        self._gaps: deque[float] = deque(maxlen=keep)

    def add(self, pts: float) -> None:
        if self._last is not None:
            gap = pts - self._last
            if gap <= 1e-3:  # parameter-set packets sharing the keyframe's pts, or a reset
                if gap < 0:
                    self._gaps.clear()
                    self._last = pts
                return
            self._gaps.append(gap)
        self._last = pts

    @property
    def interval_s(self) -> float | None:
        return max(self._gaps) if self._gaps else None


class Source:
    """One camera's reader thread: open, decode, sample by time, hand frames on; reconnect on stalls."""

    def __init__(self, camera_id: str, url: str, on_frame: FrameCallback, *,
                 analysis_fps: float = 1.0, transport: str = "tcp", watchdog: Watchdog | None = None,
                 realtime: bool = True, keyframe_only: bool | None = None,
                 on_packet: PacketListener | None = None, metrics: CameraMetrics | None = None) -> None:
        if not analysis_fps > 0:
            raise ValueError(f"camera {camera_id!r}: analysis_fps must be > 0, got {analysis_fps!r}")
        self.camera_id = camera_id
        self._url = url[len("file://"):] if url.startswith("file://") else url
        self.safe_url = redact_url(self._url)
        self.live = is_live_url(self._url)
        self.on_frame = on_frame
        self.on_packet = on_packet
        self.analysis_interval_s = 1.0 / analysis_fps
        self.transport = transport
        self.watchdog = watchdog or Watchdog()
        self.realtime = realtime
        self.keyframe_only_override = keyframe_only
        self.metrics = metrics or CameraMetrics(camera_id)
        self.error: SourceError | None = None
        self.stream_info: StreamInfo | None = None
        self.state_history: list[tuple[float, SourceState]] = []
        self._state = SourceState.CONNECTING
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampler = TimeSampler(self.analysis_interval_s)
        self._connection_frames = 0
        self._set_state(SourceState.CONNECTING)

    @classmethod
    def from_camera(cls, camera: Camera, on_frame: FrameCallback, **kwargs: Any) -> Source:
        return cls(camera.id, camera.url.get_secret_value(), on_frame, analysis_fps=camera.analysis_fps,
                   transport=camera.transport, watchdog=camera.watchdog, **kwargs)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def finished(self) -> bool:
        return self._state in (SourceState.STOPPED, SourceState.FAILED)

    def start(self) -> Source:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name=f"source-{self.camera_id}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the reader to end; it notices within one packet, or one read timeout when stalled."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader thread; True if it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _set_state(self, state: SourceState) -> None:
        if self.state_history and self._state == state:
            return
        previous = self._state
        self._state = state
        self.metrics.state = state.value
        self.state_history.append((time.time(), state))
        if self.state_history[:-1]:
            log.info("camera %s: %s -> %s", self.camera_id, previous.value, state.value,
                     extra={"camera": self.camera_id, "state": state.value})

    # -- reader thread --------------------------------------------------------------------------

    def run(self) -> None:
        """The reader loop (runs in the thread started by :meth:`start`; callable directly too)."""
        if threading.current_thread() is self._thread:
            lower_priority(READER_NICE)
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    self._connect_and_stream()
                    if not self.live:
                        self._set_state(SourceState.STOPPED)
                        return
                    if self._stop.is_set():
                        break
                    raise SourceError(self.camera_id, f"stream {self.safe_url} ended")
                except SourceError as exc:
                    self.metrics.last_error = str(exc)
                    if not self.live:
                        self._fail(exc)
                        return
                    if self._stop.is_set():
                        break
                    failures = 1 if self._connection_frames else failures + 1
                    log.warning("%s; reconnecting", exc, extra={"camera": self.camera_id})
                self._set_state(SourceState.RECONNECTING)
                if self._stop.wait(backoff_delay(self.watchdog, failures)):
                    break
                self.metrics.reconnects += 1
        except Exception as exc:  # a bug must not kill the process silently, nor leak the URL
            err = SourceError(self.camera_id, f"reader crashed: {_describe(exc)}")
            err.__cause__ = _safe_cause(exc)
            self._fail(err)
            return
        self._set_state(SourceState.STOPPED)

    def _fail(self, exc: SourceError) -> None:
        self.error = exc
        self.metrics.last_error = str(exc)
        log.error("%s", exc, extra={"camera": self.camera_id})
        self._set_state(SourceState.FAILED)

    def _open(self) -> Any:
        options: dict[str, str] = {}
        if self.live and self._url.lower().startswith("rtsp"):
            options["rtsp_transport"] = self.transport
        if not self.live and not Path(self._url).is_file():
            raise SourceEnded(self.camera_id, f"no such file: {self.safe_url}")
        started = time.monotonic()
        try:
            return av.open(self._url, options=options,
                           timeout=(self.watchdog.open_timeout_s, self.watchdog.stall_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:
            what = "cannot open stream" if self.live else "cannot open file (corrupt or not a video?)"
            reason = _describe(exc)
            if self.live and time.monotonic() - started >= 0.95 * self.watchdog.open_timeout_s:
                reason = f"no answer within open_timeout_s={self.watchdog.open_timeout_s:g} ({reason})"
            raise SourceError(self.camera_id, f"{what} {self.safe_url}: {reason}") from _safe_cause(exc)

    def _connect_and_stream(self) -> None:
        """One connection: open, stream until it ends or fails (SourceError)."""
        self._sampler.reset()
        self._connection_frames = 0
        container = self._open()
        try:
            self._stream(container)
        finally:
            self.stream_info = None
            try:
                container.close()
            except Exception:  # closing a dead connection may complain; nothing to do about it
                log.debug("camera %s: error closing source", self.camera_id)

    def _stream(self, container: Any) -> None:
        if not container.streams.video:
            raise SourceError(self.camera_id, f"no video stream in {self.safe_url}")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:  # PyAV found no decoder for the stream's codec: there is nothing to read
            raise SourceError(self.camera_id, f"unsupported codec {_codec_label(stream)} in {self.safe_url}: "
                                              f"this FFmpeg (PyAV {av.__version__}) has no decoder for it; "
                                              f"set the camera to H.264 or H.265")
        ctx.thread_count = 1  # cameras are the parallelism: decoder threads per camera only add wake-ups
        self.stream_info = StreamInfo(codec_name=ctx.name, width=ctx.width, height=ctx.height,
                                      time_base=stream.time_base or Fraction(1, 90_000),
                                      average_rate=stream.average_rate, extradata=ctx.extradata,
                                      stream=stream)
        reader = _StreamReader(self, stream)
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                reader.packet(packet)
        except (av.error.FFmpegError, OSError) as exc:
            if isinstance(exc, av.error.EOFError):
                reader.finish()
                return
            if isinstance(exc, av.error.ExitError):
                reason = f"no data for {self.watchdog.stall_timeout_s:g} s from {self.safe_url} (stalled)"
            else:
                reason = f"read failed on {self.safe_url}: {_describe(exc)}"
            raise SourceError(self.camera_id, reason) from _safe_cause(exc)
        reader.finish()


class _StreamReader:
    """Per-connection decode state: keyframe clock, decode mode, pacing, stall detection."""

    def __init__(self, source: Source, stream: Any) -> None:
        self.src = source
        self.stream = stream
        self.ctx = stream.codec_context
        self.time_base = float(stream.time_base or Fraction(1, 90_000))
        self.keyframes = KeyframeClock()
        self.decoded = 0
        self.decode_errors = 0
        self.last_pts: float | None = None
        self.last_packet_end: float | None = None
        self.last_frame_mono = time.monotonic()
        self.pace_origin: tuple[float, float] | None = None  # (pts, monotonic) for realtime files
        self.keyframe_only = False
        self.loop_filter_skipped = False
        # Until the keyframe interval is known, packets wait here undecoded (at most one GOP, or one
        # analysis interval), so a keyframe-only camera never decodes its first GOP in full.
        self.probing = source.keyframe_only_override is None
        self.pending: list[Any] = []
        self.first_key_pts: float | None = None
        if source.keyframe_only_override is not None:
            self._set_keyframe_only(source.keyframe_only_override)

    def packet(self, packet: Any) -> None:
        src = self.src
        if time.monotonic() - self.last_frame_mono > src.watchdog.stall_timeout_s:
            raise SourceError(src.camera_id, f"no frame for {src.watchdog.stall_timeout_s:g} s "
                                             f"from {src.safe_url} (stalled)")
        if packet.size == 0:  # end of input: flush the frames the decoder still holds
            self.end_probe()
            self._decode(packet)
            return
        src.metrics.packets += 1
        if packet.pts is not None:
            end = (float(packet.pts) + float(packet.duration or 0)) * self.time_base
            self.last_packet_end = max(self.last_packet_end or end, end)
            if self.keyframe_only:  # frames come one per GOP; packets show the stream is alive
                self.last_frame_mono = time.monotonic()
        if src.on_packet is not None:
            try:
                src.on_packet(packet, self.stream)
            except Exception:
                log.exception("camera %s: packet listener failed", src.camera_id)
        pts = None if packet.pts is None else float(packet.pts) * self.time_base
        if pts is not None and packet.is_keyframe:
            self.keyframes.add(pts)
            if self.first_key_pts is None:
                self.first_key_pts = pts
            if not self.probing:
                self._choose_decode_mode()
        if self.probing:
            self.pending.append(packet)
            self.last_frame_mono = time.monotonic()
            if self._probe_done(pts):
                self.end_probe()
            return
        if self.keyframe_only and not packet.is_keyframe:
            return  # the decoder would discard it (skip_frame NONKEY): do not even hand it over
        self._decode(packet)

    def _probe_done(self, pts: float | None) -> bool:
        if self.keyframes.interval_s is not None or len(self.pending) >= MAX_PROBE_PACKETS:
            return True
        # no second keyframe within one analysis interval: keyframes are too rare to skip to
        return (pts is not None and self.first_key_pts is not None
                and pts - self.first_key_pts > self.src.analysis_interval_s)

    def end_probe(self) -> None:
        """Decide the decode mode from what was measured and decode the packets held back."""
        if not self.probing:
            return
        self.probing = False
        self._choose_decode_mode()
        if self.keyframes.interval_s is None:
            self._set_keyframe_only(False)
        pending, self.pending = self.pending, []
        for packet in pending:
            self._decode(packet)

    def _decode(self, packet: Any) -> None:
        src = self.src
        t0 = time.perf_counter()
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            self.decode_errors += 1
            if not src.live and self.decode_errors > MAX_FILE_DECODE_ERRORS:
                raise SourceError(src.camera_id, f"too many decode errors in {src.safe_url}: "
                                                 f"{_describe(exc)}") from _safe_cause(exc)
            log.debug("camera %s: decode error: %s", src.camera_id, _describe(exc))
            return
        src.metrics.stage["decode"].add(time.perf_counter() - t0)
        for frame in frames:
            self._frame(frame)

    def _choose_decode_mode(self) -> None:
        if self.src.keyframe_only_override is not None:
            return
        interval = self.keyframes.interval_s
        self.src.metrics.keyframe_interval_s = interval
        if interval is not None:
            # keyframes alone serve when they come at least as often as analysed frames are due
            # (equal counts: 0.5 fps against a keyframe every 2 s is the common deployment)
            self._set_keyframe_only(self.src.analysis_interval_s >= interval - 1e-3)

    def _set_keyframe_only(self, on: bool) -> None:
        if on == self.keyframe_only and self.ctx.skip_frame == ("NONKEY" if on else "DEFAULT"):
            return
        if not on and self.loop_filter_skipped:
            grew = f"keyframe interval grew to {self.keyframes.interval_s or 0:.2f} s on {self.src.safe_url}"
            if self.src.live:
                # frames predicted from keyframes that were not deblocked would drift: start a
                # connection (and a decoder) afresh instead
                raise SourceError(self.src.camera_id, f"{grew}; reconnecting to decode every frame")
            log.warning("camera %s: %s; decoding every frame, without the loop filter, to the end of the file",
                        self.src.camera_id, grew, extra={"camera": self.src.camera_id})
        self.ctx.skip_frame = "NONKEY" if on else "DEFAULT"
        if on and not self.ctx.is_open:
            # keyframe-only pictures are nobody's reference: skip the deblocking filter (about an
            # eighth of an H.264 keyframe's decode time; mild block edges at low bitrates)
            self.ctx.options = {**self.ctx.options, "skip_loop_filter": "all"}
            self.loop_filter_skipped = True
        self.keyframe_only = on
        self.src.metrics.keyframe_only = on
        log.info("camera %s: %s", self.src.camera_id,
                 "decoding keyframes only" if on else "decoding every frame",
                 extra={"camera": self.src.camera_id, "keyframe_interval_s": self.keyframes.interval_s,
                        "analysis_interval_s": self.src.analysis_interval_s})

    def _frame(self, frame: Any) -> None:
        src = self.src
        now = time.monotonic()
        self.last_frame_mono = now
        self.decoded += 1
        src._connection_frames += 1
        src.metrics.frames_decoded += 1
        pts = frame.time
        if pts is None:  # RTSP before the first RTCP sync: place it after the previous frame, if any
            if self.last_pts is None:
                return
            pts = self.last_pts + 1.0 / float(self.stream.average_rate or 25)
        if self.last_pts is not None and pts > self.last_pts:
            src._sampler.tolerance_s = (pts - self.last_pts) / 2  # half the spacing of decoded frames
        self.last_pts = pts
        src.metrics.last_pts = pts
        if src.state is not SourceState.STREAMING:
            src._set_state(SourceState.STREAMING)
        if src.realtime and not src.live:
            self._pace(pts)
        if not src._sampler.due(pts):
            return
        image = frame.to_ndarray(format="bgr24")
        wall = time.time()
        src.metrics.last_frame_wall = wall
        src.metrics.frames_in += 1
        src.on_frame(Frame(camera_id=src.camera_id, pts=pts, wall_time=wall, image=image,
                           keyframe=bool(frame.key_frame)))

    def _pace(self, pts: float) -> None:
        """Realtime file playback: wait until the wall clock reaches this frame's place."""
        if self.pace_origin is None or pts < self.pace_origin[0]:
            self.pace_origin = (pts, time.monotonic())
            return
        delay = self.pace_origin[1] + (pts - self.pace_origin[0]) - time.monotonic()
        if delay > 0:
            self.src._stop.wait(delay)
        self.last_frame_mono = time.monotonic()

    def finish(self) -> None:
        """End of input: for a file, decide whether it ended where it said it would."""
        src = self.src
        self.end_probe()
        if src.live:
            return
        if self.decoded == 0:
            raise SourceEnded(src.camera_id, f"no decodable video in {src.safe_url}")
        expected = self._declared_duration()
        ends = self.last_packet_end
        if expected is not None and ends is not None and ends + TRUNCATION_SLACK_S < expected:
            raise SourceEnded(src.camera_id, f"file {src.safe_url} is truncated: video data ends at "
                                             f"{ends:.2f} s of {expected:.2f} s declared")

    def _declared_duration(self) -> float | None:
        if self.stream.duration is not None:
            start = float(self.stream.start_time or 0) * self.time_base
            return start + float(self.stream.duration) * self.time_base
        container = self.stream.container
        if container is not None and container.duration is not None:
            return float(container.duration) / 1_000_000
        return None
