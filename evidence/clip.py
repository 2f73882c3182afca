"""Write clip jobs as MP4 by remuxing the encoded packets: no decoder, no encoder, bytes as received.

The output stream copies the source's codec parameters (``add_stream_from_template``); timestamps
are rebased so the clip starts at 0; ``movflags=+faststart`` puts the index first so a browser can
start playing H.264 before the whole file has arrived. Files appear atomically (temp name, then
rename), so a reader never sees half a clip.

:class:`ClipWriter` runs the writes on its own thread behind a bounded queue: :meth:`ClipWriter.submit`
never blocks the caller; when the queue is full the job is dropped and counted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from evidence.errors import EvidenceError
from evidence.ring import ClipJob

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

    @property
    def duration(self) -> float:
        return self.end - self.start


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_clip(job: ClipJob) -> ClipResult:
    """Remux ``job.packets`` into ``job.dest`` (MP4). Raises :class:`EvidenceError` naming the clip."""
    packets = job.packets
    if not packets or not packets[0].keyframe:
        raise EvidenceError(f"clip for incident {job.incident_id!r}: no packets from a keyframe to write")
    first = packets[0]
    origin = first.dts if first.dts is not None else (first.pts or 0)
    job.dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.dest.with_name(f".{job.dest.name}.part")
    template, tstream = job.template.open_stream()
    try:
        with av.open(str(tmp), "w", format="mp4", container_options={"movflags": "+faststart"}) as out:
            ostream = out.add_stream_from_template(tstream)
            for p in packets:
                pkt = av.Packet(p.data)
                pkt.pts = None if p.pts is None else p.pts - origin
                pkt.dts = None if p.dts is None else p.dts - origin
                pkt.duration = p.duration
                pkt.time_base = p.time_base
                pkt.is_keyframe = p.keyframe
                pkt.stream = ostream
                out.mux(pkt)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise EvidenceError(f"clip for incident {job.incident_id!r} ({job.dest}): remux failed: {exc}") from exc
    finally:
        template.close()
    os.replace(tmp, job.dest)
    return ClipResult(job.incident_id, job.dest, sha256_file(job.dest), job.dest.stat().st_size,
                      start=first.time, end=max(p.end_time for p in packets), packets=len(packets),
                      truncated=job.truncated)


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
