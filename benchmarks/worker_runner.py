"""The project's own pipeline under test: :class:`pipeline.worker.PatrolWorker` on a generated site
config, instrumented from the outside only (no change to the worker):

* a packet listener (the worker's ``packet_listeners`` hook, where the evidence ring sits in
  production) notes when each packet arrived, so latency starts at the packet, not at decode;
* the detector loader hands the worker the preloaded detector wrapped to time each batch;
* the analyzer factory wraps the real :class:`rules.analyzer.CameraAnalyzer` (tracker, every
  zone's rule, lifecycle) to note when the decision for each frame was made.

Sources are started one by one over ``stagger_s`` so keyframes of different cameras do not
arrive in lockstep (real cameras are not synchronised).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from benchmarks.analysis import TimedTracking, bench_camera
from benchmarks.records import FrameRecord, RunnerState, TrialSpec, rss_mb
from benchmarks.warmup import warm_detector
from camera_config.schema import Camera, SiteConfig
from core.events import IncidentEvent
from core.types import Detections, Frame

ARRIVALS_KEPT = 256
TIMINGS_KEPT = 1024
"""Batch timings kept by image until the image's analysis reads them: a batch holds up to 64 frames
and, with region tiles (models/regions.py), their tiles too."""


def bench_site(spec: TrialSpec) -> SiteConfig:
    """N cameras on the benchmark streams, each with one zone of every type."""
    cameras = [bench_camera(f"cam{i}", url, spec.analysis_fps, spec.model, regions=spec.regions)
               for i, url in enumerate(spec.urls)]
    return SiteConfig.model_validate({"site": {"name": "bench", "timezone": "UTC"}, "cameras": cameras})


class ArrivalLog:
    """When each packet of one camera arrived (monotonic), by pts in ms; bounded."""

    def __init__(self) -> None:
        self._at: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()
        self._ms_per_tick: tuple[Any, float] | None = None  # (time base, its milliseconds)

    def on_packet(self, packet: Any, stream: Any) -> None:
        pts = packet.pts
        if pts is None:
            return
        tb = packet.time_base
        if self._ms_per_tick is None or self._ms_per_tick[0] != tb:  # Fraction arithmetic per packet
            self._ms_per_tick = (tb, float(tb) * 1000)                # costs more than the rest of this
        key = round(pts * self._ms_per_tick[1])
        with self._lock:
            self._at.setdefault(key, time.monotonic())
            while len(self._at) > ARRIVALS_KEPT:
                self._at.popitem(last=False)

    def arrival(self, pts: float) -> float | None:
        with self._lock:
            return self._at.get(round(pts * 1000))


class TimedDetector:
    """The detector, timing each batch. Analysis runs on its own thread, batches behind inference,
    so each image's batch timing is kept by the image's identity until its analysis reads it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._timing: OrderedDict[int, tuple[float, float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # input_size, iou_threshold...: the worker plans tiles with them
        return getattr(self.inner, name)

    def warmup(self) -> None:
        self.inner.warmup()

    def detect(self, images: Sequence[Any]) -> list[Detections]:
        start = time.monotonic()
        t0 = time.perf_counter()
        out: list[Detections] = self.inner.detect(images)
        timing = (start, time.perf_counter() - t0, len(images))
        with self._lock:
            for image in images:
                self._timing[id(image)] = timing
            while len(self._timing) > TIMINGS_KEPT:
                self._timing.popitem(last=False)
        return out

    def timing_of(self, image: Any) -> tuple[float, float, int]:
        """(batch start, batch inference seconds, batch size) of the batch ``image`` was in."""
        with self._lock:
            return self._timing.pop(id(image), (0.0, 0.0, 0))


class TimedAnalyzer:
    def __init__(self, inner: Any, camera: int, state: RunnerState, detector: TimedDetector,
                 arrivals: ArrivalLog) -> None:
        self.inner = inner
        self.camera = camera
        self.state = state
        self.detector = detector
        self.arrivals = arrivals
        self.timing = TimedTracking(inner)

    @property
    def last(self) -> Any:
        return getattr(self.inner, "last", None)

    def process(self, frame: Frame, detections: Detections) -> list[IncidentEvent]:
        self.timing.track_s = 0.0
        t0 = time.perf_counter()
        events: list[IncidentEvent] = self.inner.process(frame, detections)
        spent = time.perf_counter() - t0
        decided = time.monotonic()
        ready = frame.wall_time - (time.time() - decided)  # the frame's hand-over, on the monotonic clock
        arrival = self.arrivals.arrival(frame.pts)
        start, infer_s, batch = self.detector.timing_of(frame.image)
        self.state.add(FrameRecord(
            camera=self.camera, pts=frame.pts, arrival=arrival if arrival is not None else ready,
            decided=decided, wait_s=max(0.0, start - ready), infer_s=infer_s, batch=batch,
            track_s=self.timing.track_s, rules_s=spent - self.timing.track_s))
        return events


class PatrolWorkerRunner:
    def __init__(self, spec: TrialSpec, state: RunnerState, detector: Any) -> None:
        from pipeline.worker import PatrolWorker
        from rules.analyzer import CameraAnalyzer

        self.spec = spec
        self.state = state
        self.detector = TimedDetector(detector)
        site = bench_site(spec)
        index = {cam.id: i for i, cam in enumerate(site.cameras)}
        self.arrivals = {cam.id: ArrivalLog() for cam in site.cameras}

        def analyzer(cam: Camera, cfg: SiteConfig) -> TimedAnalyzer:
            return TimedAnalyzer(CameraAnalyzer(cam, cfg.site.timezone), index[cam.id], state, self.detector,
                                 self.arrivals[cam.id])

        self.worker = PatrolWorker(site, detector_loader=lambda _model, _score: self.detector,
                                   analyzer_factory=analyzer, keyframe_only=spec.keyframe_only,
                                   packet_listeners=lambda cam: self.arrivals[cam.id].on_packet)
        self._loop = threading.Thread(target=self.worker.run, name="worker", daemon=True)
        self._starter = threading.Thread(target=self._start_sources, name="starter", daemon=True)

    def _start_sources(self) -> None:
        gap = self.spec.stagger_s / max(1, self.spec.n)
        for rt in self.worker.cameras.values():
            if self.state.stop.wait(gap):
                return
            rt.source.start()

    def start(self) -> None:
        self.worker.load_detectors()
        self.worker.started_at = time.time()  # sources start staggered below, not all at once
        self._loop.start()
        self._starter.start()

    def close(self) -> None:
        self.state.stop.set()
        self._starter.join(timeout=5)
        self.worker.request_stop()
        self._loop.join(timeout=30)
        for i, rt in enumerate(self.worker.cameras.values()):
            err = rt.metrics.last_error
            if err and rt.metrics.frames_analysed == 0:
                self.state.fail(i, err)
        self.state.dropped = sum(int(row["frames_dropped"]) for row in self.worker.summary())  # stale ones too

    def extra(self) -> dict[str, Any]:
        """Per-camera means the worker's own metrics keep (decode time, keyframe-only mode)."""
        rows = [rt.metrics.snapshot() for rt in self.worker.cameras.values()]
        return {"processes": 1, "worker_metrics_sample": rows[0] if rows else {},
                "keyframe_only_cameras": sum(1 for rt in self.worker.cameras.values()
                                             if rt.metrics.keyframe_only)}


class ForwardingState(RunnerState):
    """A worker process's side of :class:`ShardedWorkerRunner`: records and failures go to the
    trial process, camera numbers turned back into the trial's."""

    def __init__(self, outlet: Any, cameras: list[int]) -> None:
        super().__init__()
        self.outlet = outlet
        self.cameras = cameras

    def add(self, rec: FrameRecord) -> None:
        rec.camera = self.cameras[rec.camera]
        self.outlet.send("record", rec)

    def fail(self, camera: int, message: str) -> None:
        self.outlet.send("camera_failed", (self.cameras[camera], message))


def bench_shard(config: SiteConfig, outlet: Any, stop: Any, options: dict[str, Any]) -> None:
    """One worker process of :class:`ShardedWorkerRunner` (a :mod:`pipeline.shards` entry): the
    instrumented :class:`PatrolWorkerRunner` on this shard's cameras."""
    raw = dict(options["spec"])
    spec = TrialSpec(**{**raw, "urls": tuple(cam.url.get_secret_value() for cam in config.cameras),
                        "providers": tuple(raw.get("providers", ())), "processes": 1})
    state = ForwardingState(outlet, [int(cam.id.removeprefix("cam")) for cam in config.cameras])
    runner = PatrolWorkerRunner(spec, state, warm_detector(spec))
    outlet.send("base_rss", rss_mb())
    outlet.send("ready")
    runner.start()
    stop.wait()
    runner.close()
    outlet.send("closed", {"dropped": state.dropped, "extra": runner.extra()})


class ShardedWorkerRunner:
    """``ours`` as ``patrol run`` runs a large site: the cameras split over worker processes
    (:class:`pipeline.shards.ShardedRun`), each an instrumented :class:`PatrolWorkerRunner` sending
    its frame records here."""

    def __init__(self, spec: TrialSpec, state: RunnerState, processes: int, ready_timeout_s: float = 120.0) -> None:
        from dataclasses import asdict

        from pipeline.shards import ShardedRun

        self.spec = spec
        self.state = state
        self.ready_timeout_s = ready_timeout_s
        self._base: dict[int, float] = {}
        self._closed: dict[int, dict[str, Any]] = {}
        self._all_ready = threading.Event()
        self.run = ShardedRun(bench_site(spec), processes, "benchmarks.worker_runner:bench_shard",
                              self._on_message, options={"spec": asdict(spec)})
        self._thread = threading.Thread(target=self._run, name="shards", daemon=True)

    def _run(self) -> None:
        try:
            self.run.run()
        except Exception as exc:
            for i in range(self.spec.n):
                self.state.fail(i, str(exc))
        finally:
            self._all_ready.set()

    def _on_message(self, shard: int, kind: str, payload: Any) -> None:
        if kind == "record":
            self.state.add(payload)
        elif kind == "camera_failed":
            self.state.fail(*payload)
        elif kind == "base_rss":
            self._base[shard] = payload
        elif kind == "ready":
            if all(s.ready for s in self.run.shards):  # ShardedRun marks each shard ready before this
                self._all_ready.set()
        elif kind == "closed":
            self._closed[shard] = payload

    def start(self) -> None:
        self._thread.start()
        if not self._all_ready.wait(self.ready_timeout_s):
            raise RuntimeError(f"worker processes not ready within {self.ready_timeout_s:.0f} s")

    def close(self) -> None:
        self.state.stop.set()
        self.run.request_stop()
        self._thread.join(timeout=90)
        self.state.dropped = sum(int(c.get("dropped", 0)) for c in self._closed.values())

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.run.shards if s.process is not None and s.process.is_alive()]

    def rss_base_mb(self) -> float:
        return sum(self._base.values())

    def extra(self) -> dict[str, Any]:
        extras = [c.get("extra", {}) for _, c in sorted(self._closed.items())]
        return {"processes": len(self.run.shards),
                "worker_metrics_sample": extras[0].get("worker_metrics_sample", {}) if extras else {},
                "keyframe_only_cameras": sum(int(e.get("keyframe_only_cameras", 0)) for e in extras)}
