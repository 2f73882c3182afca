"""Write clip jobs as MP4 by remuxing the encoded packets: no decoder, no encoder, bytes as received.

The output stream copies the source's codec parameters (``add_stream_from_template``); timestamps
are rebased so the clip starts at 0, and made strictly increasing where the stream's clock jumped
(:func:`rebase`: MP4 refuses decode times that go back or stand still); ``movflags=+faststart``
puts the index first so a browser can start playing H.264 before the whole file has arrived. Files
appear atomically (temp name, then rename), so a reader never sees half a clip.

:class:`ClipWriter` runs the writes on its own thread behind a bounded queue: :meth:`ClipWriter.submit`
never blocks the caller; when the queue is full the job is dropped and counted.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from evidence.errors import EvidenceError
from evidence.ring import ClipJob, EncodedPacket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClipResult:
    incident_id: str
    path: Path
    sha256: str
    bytes: int
    start: float
    """Stream time (s) of the clip's first packet: a keyframe."""
    end: float
    """Stream time (s) the last packet ends."""
    packets: int
    truncated: bool
    timestamp_jumps: int = 0
    """Times the stream's timestamps went back, stood still or leapt ahead inside the clip (a camera
    restarting its clock, a spliced recording); each was closed up to one frame (see :func:`rebase`)."""
    length_s: float | None = None
    """Length of the written clip, seconds; differs from ``end - start`` only across a timestamp jump."""

    @property
    def duration(self) -> float:
        return self.length_s if self.length_s is not None else self.end - self.start


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


MAX_GAP_S = 10.0
"""A forward step between two packets' decode times longer than this is a timestamp jump, not a pause:
a clip is pre + post roll (10 s by default), and a camera that stalls that long reconnects (watchdog)."""
DEFAULT_FRAME_S = 0.04
"""Frame step assumed across a jump when the clip shows none (25 fps)."""


def _frame_step(dts: list[int], durations: list[int], max_gap: float, fallback: int) -> int:
    """The clip's usual frame step in time-base units: the (lower) median forward step short of a jump,
    else the median packet duration, else ``fallback``."""
    steps = sorted(b - a for a, b in itertools.pairwise(dts) if 0 < b - a <= max_gap)
    if steps:
        return steps[(len(steps) - 1) // 2]
    known = sorted(d for d in durations if d > 0)
    return known[len(known) // 2] if known else fallback


def rebase(packets: list[EncodedPacket]) -> tuple[list[tuple[int, int]], Fraction, int]:
    """(pts, dts) per packet in the first packet's time base, starting at 0, with decode times strictly
    increasing as MP4 requires; the time base; how many jumps were closed.

    Where decode time goes back, stands still, or leaps ahead more than :data:`MAX_GAP_S`, the rest of
    the clip is shifted to follow one frame step after the packet before; each packet keeps its own
    pts - dts offset (B-frame reordering), and pts never falls below dts. FFmpeg's MP4 muxer refuses
    the first two outright ("Invalid argument"); the third would make a clip mostly of nothing."""
    base = packets[0].time_base

    def in_base(ts: int | None, tb: Fraction) -> int | None:
        return None if ts is None else (ts if tb == base else round(ts * tb / base))

    raw = []
    for p in packets:
        pts, dts = in_base(p.pts, p.time_base), in_base(p.dts, p.time_base)
        dts = dts if dts is not None else pts
        raw.append((pts if pts is not None else dts, dts))
    raw_dts = [d for _, d in raw if d is not None]
    max_gap = MAX_GAP_S / base
    step = max(1, _frame_step(raw_dts, [in_base(p.duration, p.time_base) or 0 for p in packets], max_gap,
                              round(DEFAULT_FRAME_S / base)))
    out: list[tuple[int, int]] = []
    shift, last, jumps = 0, None, 0
    for pts, dts in raw:
        if dts is None:  # neither pts nor dts: one frame after the last
            dts = pts = (last + step - shift) if last is not None else 0
        assert pts is not None
        if last is None:
            shift = -dts
        elif not 0 < dts + shift - last <= max_gap:
            shift = last + step - dts
            jumps += 1
        new_dts = dts + shift
        out.append((max(pts + shift, new_dts), new_dts))
        last = new_dts
    return out, base, jumps


def write_clip(job: ClipJob) -> ClipResult:
    """Remux ``job.packets`` into ``job.dest`` (MP4). Raises :class:`EvidenceError` naming the clip."""
    packets = job.packets
    if not packets or not packets[0].keyframe:
        raise EvidenceError(f"clip for incident {job.incident_id!r}: no packets from a keyframe to write")
    first = packets[0]
    stamps, base, jumps = rebase(packets)
    if jumps:
        log.warning("clip for incident %s: the stream's timestamps jumped %d time(s); closed up to one frame "
                    "each", job.incident_id, jumps, extra={"camera": job.camera_id, "incident": job.incident_id})
    job.dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.dest.with_name(f".{job.dest.name}.part")
    template, tstream = job.template.open_stream()
    try:
        with av.open(str(tmp), "w", format="mp4", container_options={"movflags": "+faststart"}) as out:
            ostream = out.add_stream_from_template(tstream)
            for p, (pts, dts) in zip(packets, stamps, strict=True):
                pkt = av.Packet(p.data)
                pkt.pts, pkt.dts = pts, dts
                pkt.duration = p.duration if p.time_base == base else round(p.duration * p.time_base / base)
                pkt.time_base = base
                pkt.is_keyframe = p.keyframe
                pkt.stream = ostream
                out.mux(pkt)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise EvidenceError(f"clip for incident {job.incident_id!r} ({job.dest}): remux failed: {exc}") from exc
    finally:
        template.close()
    os.replace(tmp, job.dest)
    length = float(max(pts + (p.duration if p.time_base == base else round(p.duration * p.time_base / base))
                       for p, (pts, _dts) in zip(packets, stamps, strict=True)) * base)
    return ClipResult(job.incident_id, job.dest, sha256_file(job.dest), job.dest.stat().st_size,
                      start=first.time, end=max(p.end_time for p in packets), packets=len(packets),
                      truncated=job.truncated, timestamp_jumps=jumps, length_s=length)


class ClipWriter:
    """One worker thread writing clips from a bounded queue; submit never blocks."""

    def __init__(self, max_queue: int = 8, name: str = "clip-writer") -> None:
        if max_queue < 1:
            raise ValueError(f"ClipWriter: max_queue must be >= 1, got {max_queue}")
        self._queue: queue.Queue[ClipJob | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._lock = threading.Lock()
        self.written = 0
        self.failed = 0
        self.dropped = 0
        self._thread.start()

    def submit(self, job: ClipJob) -> bool:
        """Queue ``job``; False (and ``dropped`` + 1) when the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            log.warning("clip queue full: clip dropped",
                        extra={"camera": job.camera_id, "incident": job.incident_id})
            return False
        return True

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish queued clips, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                result = write_clip(job)
            except EvidenceError as exc:
                with self._lock:
                    self.failed += 1
                log.error("clip not written: %s", exc, extra={"camera": job.camera_id})
                if job.on_done is not None:
                    self._callback(job, exc)
                continue
            with self._lock:
                self.written += 1
            if job.on_done is not None:
                self._callback(job, result)

    @staticmethod
    def _callback(job: ClipJob, outcome: ClipResult | EvidenceError) -> None:
        assert job.on_done is not None
        try:
            job.on_done(outcome)
        except Exception:  # a bad callback must not kill the writer thread
            log.exception("clip callback failed", extra={"incident": job.incident_id})


class ClipWriterCollector(Collector):
    """Prometheus view of a :class:`ClipWriter`: clips written, failed, dropped, queue depth.

    Register it on the pipeline's registry: ``registry.register(ClipWriterCollector(writer))``.
    """

    def __init__(self, writer: ClipWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        w = self.writer
        for name, doc, value in (("patrol_clips_written", "Evidence clips written.", w.written),
                                 ("patrol_clips_failed", "Evidence clips that failed to remux.", w.failed),
                                 ("patrol_clips_dropped", "Evidence clips dropped: writer queue full.", w.dropped)):
            fam = CounterMetricFamily(name, doc)
            fam.add_metric([], float(value))
            yield fam
        depth = GaugeMetricFamily("patrol_clip_queue_depth", "Clips waiting to be written.")
        depth.add_metric([], float(w.depth))
        yield depth
