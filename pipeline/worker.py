"""The camera runtime: reader threads -> latest-frame slots -> one batching inference loop.

It only orchestrates: every camera's :class:`pipeline.sources.Source` decodes and samples in its
own thread and drops its frame into a :class:`pipeline.sampler.LatestFrameSlot`; one loop takes
the latest frame of every camera that has one, runs one ``detector.detect(batch)`` per model,
hands each frame to its camera's analyzer (``process(frame, detections) -> events``) and the
events to the sink (``publish(events)``). A camera that fails never stops the others. Every pass of
the loop also reads each source's state (:mod:`pipeline.health`): a camera that has not streamed
for ``watchdog.offline_after_s`` becomes a ``camera_offline`` incident through the same sink.

A worker needs only its site config (plus, later, a broker and a database): nothing assumes one
process or one machine per site.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import numpy as np

from alerts.events import IncidentEvent
from camera_config.schema import Camera, DetectorChoice, SiteConfig
from models.coco import COCO80
from patrol.errors import ModelError, PatrolError
from pipeline.health import HealthMonitor, publish_health
from pipeline.metrics import CameraMetrics, make_registry
from pipeline.sampler import LatestFrameSlot
from pipeline.sources import PacketListener, Source
from pipeline.types import Detections, Frame

log = logging.getLogger("patrol.worker")


class Analyzer(Protocol):
    def process(self, frame: Frame, detections: Detections) -> list[IncidentEvent]: ...


class EventSink(Protocol):
    def publish(self, events: Sequence[IncidentEvent]) -> None: ...

    def flush(self) -> None: ...


class DetectorLike(Protocol):
    def warmup(self) -> None: ...

    def detect(self, images: Sequence[Any]) -> list[Detections]: ...


AnalyzerFactory = Callable[[Camera, SiteConfig], Analyzer]
DetectorLoader = Callable[[str, float], DetectorLike]
PacketListenerFactory = Callable[[Camera], PacketListener | None]


class JsonLinesSink:
    """Default sink: one JSON object per event on a text stream (stdout unless given)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self.published = 0
        self._lock = threading.Lock()

    def publish(self, events: Sequence[IncidentEvent]) -> None:
        out = self.stream or sys.stdout
        with self._lock:
            for event in events:
                out.write(event.to_json() + "\n")
                self.published += 1

    def flush(self) -> None:
        (self.stream or sys.stdout).flush()


def default_analyzer(camera: Camera, site: SiteConfig) -> Analyzer:
    """The camera's rules: tracker, zones, rules and incident lifecycle (alerts.analyzer)."""
    from alerts.analyzer import CameraAnalyzer  # imported here: alerts builds on pipeline

    analyzer: Analyzer = CameraAnalyzer(camera, site.site.timezone)
    return analyzer


def default_detector_loader(model: str, score_threshold: float) -> DetectorLike:
    from models.factory import load_detector

    detector: DetectorLike = load_detector(model, score_threshold=score_threshold)
    return detector


def lowest_score(choices: Sequence[DetectorChoice]) -> float:
    """The loosest threshold any camera asks of a shared model; cameras filter further themselves."""
    return min(min([c.default_score, *c.class_scores.values()]) for c in choices)


def class_thresholds(choice: DetectorChoice) -> np.ndarray:
    return np.array([choice.class_scores.get(n, choice.default_score) for n in COCO80], np.float32)


@dataclass
class CameraRuntime:
    """Everything the worker keeps for one camera."""

    camera: Camera
    source: Source
    slot: LatestFrameSlot
    analyzer: Analyzer
    metrics: CameraMetrics
    thresholds: np.ndarray
    track_ids: set[int] = field(default_factory=set)
    analyzer_errors: int = 0


class PatrolWorker:
    """Runs every camera of one site config until stopped, the duration ends or all files end."""

    def __init__(self, config: SiteConfig, *, detector_loader: DetectorLoader = default_detector_loader,
                 analyzer_factory: AnalyzerFactory = default_analyzer, sink: EventSink | None = None,
                 realtime: bool = True, keyframe_only: bool | None = None,
                 packet_listeners: PacketListenerFactory | None = None, max_batch: int = 8) -> None:
        """``max_batch`` caps the frames analysed per cycle: the shipped models run one image per
        call, so a bigger batch only makes its first frame wait (near capacity, unbounded batches
        spiral into long cycles and growing lag — see benchmarks/)."""
        if max_batch < 1:
            raise ValueError(f"PatrolWorker: max_batch must be >= 1, got {max_batch}")
        self.config = config
        self.max_batch = max_batch
        self._next_camera = 0
        self.sink: EventSink = sink or JsonLinesSink()
        self._detector_loader = detector_loader
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self.detectors: dict[str, DetectorLike] = {}
        self.cameras: dict[str, CameraRuntime] = {}
        for cam in config.cameras:
            metrics = CameraMetrics(cam.id)
            slot = LatestFrameSlot(cam.id, self._wakeup)
            source = Source.from_camera(cam, slot.put, realtime=realtime, keyframe_only=keyframe_only,
                                        metrics=metrics,
                                        on_packet=packet_listeners(cam) if packet_listeners else None)
            self.cameras[cam.id] = CameraRuntime(cam, source, slot, analyzer_factory(cam, config), metrics,
                                                 class_thresholds(cam.detector))
        self.health = HealthMonitor(config.cameras)
        self.registry = make_registry(self._metrics_snapshot)
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def load_detectors(self) -> None:
        by_model: dict[str, list[DetectorChoice]] = {}
        for rt in self.cameras.values():
            by_model.setdefault(rt.camera.detector.model, []).append(rt.camera.detector)
        for model, choices in by_model.items():
            if model in self.detectors:
                continue
            try:
                detector = self._detector_loader(model, lowest_score(choices))
                detector.warmup()
            except PatrolError:
                raise
            except Exception as exc:
                raise ModelError(f"model {model!r}: cannot load: {exc}") from exc
            self.detectors[model] = detector

    def start(self) -> None:
        self.load_detectors()
        self.started_at = time.time()
        for rt in self.cameras.values():
            rt.source.start()
        log.info("worker started: site %s, %d camera(s)", self.config.site.name, len(self.cameras))

    def request_stop(self) -> None:
        """Safe from a signal handler or another thread."""
        self._stop.set()
        self._wakeup.set()

    def run(self, duration: float | None = None) -> None:
        """Start (if needed) and run the inference loop in this thread until stopped; then close."""
        if self.started_at is None:
            self.start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            while not self._stop.is_set():
                self.check_health()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if self._all_sources_finished() and not self._pending():
                    log.info("every source has ended")
                    break
                timeout = 0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))
                self._wakeup.wait(timeout)
                self._wakeup.clear()
                self.step()
        finally:
            self.close()

    def step(self) -> int:
        """Take the latest frame of up to ``max_batch`` cameras and analyse them as one batch.

        Cameras are visited round-robin from where the last full batch stopped, so under load every
        camera gets its turn; a frame left in its slot is replaced by a newer one (a counted drop).
        """
        runtimes = list(self.cameras.values())
        batch: list[Frame] = []
        for i in range(len(runtimes)):
            index = (self._next_camera + i) % len(runtimes)
            frame = runtimes[index].slot.take()
            if frame is None:
                continue
            batch.append(frame)
            if len(batch) >= self.max_batch:
                self._next_camera = (index + 1) % len(runtimes)
                break
        if batch:
            self._analyse(batch)
        return len(batch)

    def close(self, join_timeout: float = 15.0) -> None:
        """Stop readers, analyse what they left in the slots, flush the sink. Idempotent."""
        if self.stopped_at is not None:
            return
        self._stop.set()
        for rt in self.cameras.values():
            rt.source.stop()
        for rt in self.cameras.values():
            if not rt.source.join(join_timeout):
                log.warning("camera %s: reader did not stop within %.0f s; abandoned",
                            rt.camera.id, join_timeout)
        while self.step():  # drain what the readers left
            pass
        self.check_health()  # a source that FAILED at the very end still reports
        try:
            self.sink.flush()
        except Exception:
            log.exception("event sink failed to flush")
        self.stopped_at = time.time()
        log.info("worker stopped")

    def check_health(self) -> list[IncidentEvent]:
        """camera_offline events from every source's state (pipeline.health); sent through the sink."""
        states = {cid: (rt.source.state, rt.source.metrics.last_error) for cid, rt in self.cameras.items()}
        check = self.health.check(states, time.time(), time.monotonic())
        if check.events or check.reports:
            try:
                publish_health(self.sink, check.events, check.reports)
            except Exception:
                log.exception("camera health: event sink failed on %d event(s)", len(check.events))
        return check.events

    def _all_sources_finished(self) -> bool:
        return all(rt.source.finished for rt in self.cameras.values())

    def _pending(self) -> bool:
        return any(rt.slot.pending() for rt in self.cameras.values())

    # -- analysis -------------------------------------------------------------------------------

    def _analyse(self, frames: list[Frame]) -> None:
        by_model: dict[str, list[Frame]] = {}
        for frame in frames:
            by_model.setdefault(self.cameras[frame.camera_id].camera.detector.model, []).append(frame)
        for model, group in by_model.items():
            t0 = time.perf_counter()
            try:
                detections = self.detectors[model].detect([f.image for f in group])
            except Exception:
                log.exception("model %s: detection failed on a batch of %d frame(s); batch skipped",
                              model, len(group))
                continue
            share = (time.perf_counter() - t0) / len(group)
            for frame, dets in zip(group, detections, strict=True):
                rt = self.cameras[frame.camera_id]
                rt.metrics.stage["infer"].add(share)
                self._analyse_one(rt, frame, dets)

    def _analyse_one(self, rt: CameraRuntime, frame: Frame, dets: Detections) -> None:
        kept = dets[dets.score >= rt.thresholds[np.clip(dets.class_id, 0, len(COCO80) - 1)]] if len(dets) else dets
        rt.metrics.add_detections(COCO80[c] if 0 <= c < len(COCO80) else str(c) for c in kept.class_id.tolist())
        t0 = time.perf_counter()
        try:
            events = rt.analyzer.process(frame, dets)
        except Exception:
            rt.analyzer_errors += 1
            log.exception("camera %s: analyzer failed at pts %.3f", rt.camera.id, frame.pts)
            return
        finally:
            rt.metrics.stage["analyze"].add(time.perf_counter() - t0)
            rt.metrics.frames_analysed += 1
        self._note_tracks(rt)
        if events:
            rt.metrics.events += len(events)
            try:
                self.sink.publish(events)
            except Exception:
                log.exception("camera %s: event sink failed on %d event(s)", rt.camera.id, len(events))

    @staticmethod
    def _note_tracks(rt: CameraRuntime) -> None:
        report = getattr(rt.analyzer, "last", None)
        tracks = getattr(report, "tracks", None)
        if tracks is None:
            return
        rt.track_ids.update(int(t.track_id) for t in tracks)
        rt.metrics.extra["tracks"] = len(rt.track_ids)
        rt.metrics.extra["tracks_now"] = len(tracks)

    # -- reporting ------------------------------------------------------------------------------

    def _metrics_snapshot(self) -> list[CameraMetrics]:
        for rt in self.cameras.values():
            rt.metrics.frames_dropped = rt.slot.dropped
        return [rt.metrics for rt in self.cameras.values()]

    def summary(self) -> list[dict[str, Any]]:
        """One credential-free row per camera (what ``patrol run --summary`` prints)."""
        rows = []
        for m in self._metrics_snapshot():
            row = m.snapshot()
            rt = self.cameras[m.camera_id]
            row["analyzer_errors"] = rt.analyzer_errors
            row["source"] = rt.source.safe_url
            rows.append(row)
        return rows

    def summary_json(self) -> str:
        return json.dumps({"site": self.config.site.name, "cameras": self.summary()}, default=str)
