"""Our pipeline's hot path as the capacity benchmark runs it.

One reader thread per camera (PyAV; demux and decode release the GIL):

* time-based sampling on the stream's own clock (``analysis_fps``);
* **keyframe-only decoding** when the analysis interval is at least the keyframe interval (learnt
  from the stream): other packets are read off the socket and dropped without decoding;
* otherwise every packet is decoded (P-frames need their references) but **only sampled frames
  are converted**, and they are converted **straight to the model's input size**
  (``frame.reformat(w, h, 'bgr24')``: one swscale pass does scaling and YUV->BGR together);
* the converted picture goes into that camera's **latest-frame slot** (a newer one replaces an
  older one that was not yet analysed and counts a drop; the reader never blocks).

One inference thread takes whatever slots are full and runs the detector on the batch; one analysis
thread runs the tracker, rules and incident lifecycle per camera (:mod:`benchmarks.analysis`), so
inference of the next batch overlaps analysis of this one (ONNX Runtime releases the GIL).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from benchmarks.analysis import CameraAnalysis
from benchmarks.trial import FrameRecord, RunnerState, TrialSpec
from core.types import Frame

OPEN_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "0", "probesize": "65536", "fflags": "nobuffer"}
OPEN_TIMEOUT_S = 10.0


@dataclass(slots=True)
class Job:
    camera: int
    pts: float
    arrival: float
    ready: float
    image: npt.NDArray[np.uint8]
    native: tuple[int, int]
    decode_s: float
    convert_s: float


def analysis_size(native: tuple[int, int], net: tuple[int, int], resize: str) -> tuple[int, int]:
    """The (w, h) to decode into: the model input for a stretching model, else the aspect-kept size
    that fits inside it (the detector pads the rest)."""
    w, h = native
    nw, nh = net
    if resize == "stretch":
        return nw, nh
    s = min(nw / w, nh / h, 1.0)
    return max(2, round(w * s) // 2 * 2), max(2, round(h * s) // 2 * 2)


class TimeSampler:
    """Pick frames ``1 / fps`` apart on the stream clock, tolerant of timestamp jitter."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"TimeSampler: fps must be positive, got {fps}")
        self.interval = 1.0 / fps
        self.tolerance = 0.002  # clock rounding only: a frame early is a frame early
        self.next_due: float | None = None

    def due(self, pts: float) -> bool:
        if self.next_due is not None and pts < self.next_due - self.tolerance:
            return False
        self.next_due = pts + self.interval if self.next_due is None or pts > self.next_due + self.interval \
            else self.next_due + self.interval
        return True


class KeyframeClock:
    """Learns the keyframe interval; says whether analysing keyframes only meets the sampling rate."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last_key: float | None = None
        self.period: float | None = None

    def saw_keyframe(self, pts: float) -> None:
        if self.last_key is not None and pts > self.last_key:
            self.period = pts - self.last_key if self.period is None else min(self.period, pts - self.last_key)
        self.last_key = pts

    @property
    def keyframes_only(self) -> bool:
        if self.period is None:  # until learnt: assume a typical 1-2 s GOP
            return self.interval_s >= 1.0
        return self.interval_s >= self.period - 1e-3


class FastPathRunner:
    def __init__(self, spec: TrialSpec, state: RunnerState, detector: Any) -> None:
        self.spec = spec
        self.state = state
        self.detector = detector
        resize = getattr(getattr(detector, "spec", None), "resize", "letterbox")
        self.resize = str(resize)
        self.pending: dict[int, Job] = {}
        self.cond = threading.Condition()
        self.analyses: dict[int, CameraAnalysis] = {}
        self.threads = [threading.Thread(target=self._read, args=(i, url), name=f"reader-{i}", daemon=True)
                        for i, url in enumerate(spec.urls)]
        self.infer_thread = threading.Thread(target=self._infer_loop, name="infer", daemon=True)
        # detections -> tracker/rules in a second thread, so the next batch's inference (ORT drops
        # the GIL) overlaps with this batch's analysis; a short queue pushes back on inference
        self.analysis_queue: queue.Queue[tuple[list[Job], list[Any], float, float] | None] = queue.Queue(2)
        self.analysis_thread = threading.Thread(target=self._analysis_loop, name="analysis", daemon=True)

    def start(self) -> None:
        self.analysis_thread.start()
        self.infer_thread.start()
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.state.stop.set()
        with self.cond:
            self.cond.notify_all()
        for t in self.threads:
            t.join(timeout=OPEN_TIMEOUT_S + 2)
        self.infer_thread.join(timeout=10)
        with contextlib.suppress(queue.Full):
            self.analysis_queue.put(None, timeout=5)
        self.analysis_thread.join(timeout=10)

    # --- readers ------------------------------------------------------------------------------

    def _read(self, camera: int, url: str) -> None:
        stop = self.state.stop
        if stop.wait(self.spec.stagger_s * camera / max(1, self.spec.n)):
            return
        try:
            container = av.open(url, options=OPEN_OPTIONS, timeout=(OPEN_TIMEOUT_S, OPEN_TIMEOUT_S))
        except (av.FFmpegError, OSError) as exc:
            self.state.fail(camera, f"open failed: {exc}")
            return
        try:
            self._read_packets(camera, container)
        except (av.FFmpegError, OSError) as exc:
            if not stop.is_set():
                self.state.fail(camera, f"read failed: {exc}")
        finally:
            container.close()

    def _read_packets(self, camera: int, container: Any) -> None:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # many cameras per core: frame threads only add memory
        sampler = TimeSampler(self.spec.analysis_fps)
        keys = KeyframeClock(sampler.interval)
        net = self.detector.input_size
        size: tuple[int, int] | None = None
        for packet in container.demux(stream):
            if self.state.stop.is_set():
                return
            arrival = time.monotonic()
            if packet.pts is None or packet.size == 0:
                continue
            pts = float(packet.pts * packet.time_base)
            if packet.is_keyframe:
                keys.saw_keyframe(pts)
            elif keys.keyframes_only:
                continue  # never decoded: the biggest saving of the whole pipeline
            if keys.keyframes_only and not sampler.due(pts):
                continue
            t0 = time.perf_counter()
            frames = packet.decode()
            t1 = time.perf_counter()
            for frame in frames:
                fpts = float(frame.pts * frame.time_base) if frame.pts is not None else pts
                if not keys.keyframes_only and not sampler.due(fpts):
                    continue
                native = (frame.width, frame.height)
                if size is None:
                    size = analysis_size(native, net, self.resize)
                t2 = time.perf_counter()
                image = frame.reformat(size[0], size[1], format="bgr24").to_ndarray()
                t3 = time.perf_counter()
                self._offer(Job(camera, fpts, arrival, time.monotonic(), image, native, t1 - t0, t3 - t2))

    def _offer(self, job: Job) -> None:
        with self.cond:
            if job.camera in self.pending:
                self.state.dropped += 1
            self.pending[job.camera] = job
            self.cond.notify()

    # --- inference ----------------------------------------------------------------------------

    def _infer_loop(self) -> None:
        stop = self.state.stop
        while not stop.is_set():
            with self.cond:
                while not self.pending and not stop.is_set():
                    self.cond.wait(0.2)
                jobs = sorted(self.pending.values(), key=lambda j: j.ready)[: self.spec.max_batch]
                for j in jobs:
                    del self.pending[j.camera]
            if jobs:
                self._analyse(jobs)

    def _analyse(self, jobs: list[Job]) -> None:
        start = time.monotonic()
        t0 = time.perf_counter()
        dets = self.detector.detect([j.image for j in jobs])
        infer_s = time.perf_counter() - t0
        while not self.state.stop.is_set():
            try:
                self.analysis_queue.put((jobs, dets, start, infer_s), timeout=0.2)
                return
            except queue.Full:
                continue

    def _analysis_loop(self) -> None:
        while True:
            item = self.analysis_queue.get()
            if item is None:
                return
            jobs, dets, start, infer_s = item
            for job, det in zip(jobs, dets, strict=True):
                analysis = self.analyses.get(job.camera)
                if analysis is None:
                    analysis = self.analyses[job.camera] = CameraAnalysis(f"cam{job.camera}", self.spec.model)
                # analysis runs on the model-sized picture: zones are normalised, so rules need no
                # native pixels (evidence snapshots would come from the packet ring at full size)
                frame = Frame(f"cam{job.camera}", job.pts, time.time(), job.image)
                times = analysis.step(frame, det)
                self.state.add(FrameRecord(
                    camera=job.camera, pts=job.pts, arrival=job.arrival, decided=time.monotonic(),
                    decode_s=job.decode_s, convert_s=job.convert_s, wait_s=start - job.ready,
                    infer_s=infer_s, batch=len(jobs), track_s=times.track_s, rules_s=times.rules_s))
