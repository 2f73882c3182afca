"""The camera runtime: reader threads -> latest-frame slots -> inference loop -> analysis thread.

It only orchestrates: every camera's :class:`pipeline.sources.Source` decodes and samples in its
own thread and drops its frame into a :class:`pipeline.sampler.LatestFrameSlot`; one loop takes
the latest frame of every camera that has one and runs one ``detector.detect(batch)`` per model;
one analysis thread hands each frame to its camera's analyzer (``process(frame, detections) ->
events``) and the events to the sink (``publish(events)``). A camera that fails never stops the
others. Every pass of the loop also reads each source's state (:mod:`pipeline.health`): a camera
that has not streamed for ``watchdog.offline_after_s`` becomes a ``camera_offline`` incident
through the same sink.

Inference and analysis overlap: ONNX Runtime releases the GIL, so while the analysis thread runs
the tracker and rules of one batch, the next batch is already being inferred (serially, the two
add up: about 50 ms a frame on two cores, a hard ceiling of 20 frames a second). The hand-over
queue holds at most ``ANALYSIS_QUEUE`` batches, so a slow analysis pushes back on inference and
the latest-frame slots drop stale frames (counted) instead of a backlog growing. Every call into
the sink — incident events and health reports alike — is made from the analysis thread, one
writer, in order. Driven by :meth:`PatrolWorker.step` alone (no :meth:`PatrolWorker.run`), a batch
is analysed before ``step`` returns.

A worker needs only its site config (plus, later, a broker and a database): nothing assumes one
process or one machine per site.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from camera_config.schema import Camera, DetectorChoice, SiteConfig
from core.coco import COCO80
from core.errors import ModelError, PatrolError
from core.events import IncidentEvent
from core.types import Detections, Frame
from models.regions import RegionPlanner, Tile, detect_with_regions
from pipeline.health import HealthMonitor, HealthReport, publish_health
from pipeline.metrics import CameraMetrics, make_registry
from pipeline.sampler import LatestFrameSlot
from pipeline.sources import PacketListener, Source

log = logging.getLogger("patrol.worker")

ANALYSIS_QUEUE = 1
"""Batches waiting for the analysis thread before inference waits for it."""

STALE_AFTER_S = 0.8
"""A frame older than this when its turn comes — for inference, or for analysis after it — is
skipped, not analysed late (counted as a drop and in ``frames_stale``): it would be decided past
the 1 s frame-to-decision budget anyway, and analysing it keeps an overloaded machine backlogged
(measured in benchmarks/: at the edge of capacity a worker that analyses every late frame can
stay seconds behind for good, because inference and analysis then contend for the GIL and each
frame costs them several times more; one that sheds late frames gets back to keeping up). The
camera's next frame, due one analysis interval later, comes fresh."""


STARVED_AFTER_INTERVALS = 4
"""A camera with no analysed frame for this many of its analysis intervals gets its next frame
analysed even when it is late (a late decision beats none): past capacity every camera slows down
instead of all going blind (measured in benchmarks/: at 64 1080p cameras on 2 cores every frame
was late, and shedding them all left cameras with no analysed frame for the whole trial)."""


class Analyzer(Protocol):
    def process(self, frame: Frame, detections: Detections) -> list[IncidentEvent]: ...


class EventsAtRisk(PatrolError):
    """Raised by a sink that can neither commit nor keep events (database refusing writes and no
    room to spill them): the worker logs it, stops, and :attr:`PatrolWorker.fatal` holds it."""


class EventSink(Protocol):
    def publish(self, events: Sequence[IncidentEvent]) -> None: ...

    def report_health(self, reports: Sequence[HealthReport]) -> None:
        """Cameras' retained health states (pipeline.health), after the events of the same check."""
        ...

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

    def report_health(self, reports: Sequence[HealthReport]) -> None:
        """Health states are not incident events: stdout carries events only."""

    def flush(self) -> None:
        (self.stream or sys.stdout).flush()


def default_detector_loader(model: str, score_threshold: float) -> DetectorLike:
    from models.factory import load_detector

    detector: DetectorLike = load_detector(model, score_threshold=score_threshold)
    return detector


def lowest_score(choices: Sequence[DetectorChoice]) -> float:
    """The loosest threshold any camera asks of a shared model; cameras filter further themselves."""
    return min(c.lowest_score for c in choices)


@dataclass
class CameraRuntime:
    """Everything the worker keeps for one camera."""

    camera: Camera
    source: Source
    slot: LatestFrameSlot
    analyzer: Analyzer
    metrics: CameraMetrics
    track_ids: set[int] = field(default_factory=set)
    analyzer_errors: int = 0
    stale_waiting: int = 0
    """Frames shed as stale before inference (counted by the inference loop only)."""
    stale_analysis: int = 0
    """Frames shed as stale before analysis (counted by the analysis thread only)."""
    last_analysed: float = field(default_factory=time.monotonic)
    """Monotonic time the camera's last frame was analysed (or the worker was made)."""
    regions: RegionPlanner | None = None
    """The camera's tiles for zone-focused detection (models/regions.py), set when its detector loads."""


class PatrolWorker:
    """Runs every camera of one site config until stopped, the duration ends or all files end."""

    def __init__(self, config: SiteConfig, *, detector_loader: DetectorLoader = default_detector_loader,
                 analyzer_factory: AnalyzerFactory, sink: EventSink | None = None,
                 realtime: bool = True, keyframe_only: bool | None = None,
                 packet_listeners: PacketListenerFactory | None = None, max_batch: int = 8,
                 stale_after_s: float | None = STALE_AFTER_S) -> None:
        """``max_batch`` caps the frames analysed per cycle: the shipped models run one image per
        call, so a bigger batch only makes its first frame wait (near capacity, unbounded batches
        spiral into long cycles and growing lag — see benchmarks/). ``stale_after_s`` (live, i.e.
        ``realtime``, runs only; ``None``: never) skips a frame that waited longer than that for
        its turn."""
        if max_batch < 1:
            raise ValueError(f"PatrolWorker: max_batch must be >= 1, got {max_batch}")
        if stale_after_s is not None and not stale_after_s > 0:
            raise ValueError(f"PatrolWorker: stale_after_s must be > 0 or None, got {stale_after_s}")
        self.config = config
        self.max_batch = max_batch
        self.stale_after_s = stale_after_s if realtime else None
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
            self.cameras[cam.id] = CameraRuntime(cam, source, slot, analyzer_factory(cam, config), metrics)
        self.health = HealthMonitor(config.cameras)
        self.registry = make_registry(self._metrics_snapshot)
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.fatal: EventsAtRisk | None = None
        """Set when the sink could not keep events: the worker stopped on it."""
        self._analysis: queue.Queue[Callable[[], None] | None] = queue.Queue(ANALYSIS_QUEUE)
        self._analysis_thread: threading.Thread | None = None

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
        for rt in self.cameras.values():  # zone-focused detection needs the network input size
            size = getattr(self.detectors[rt.camera.detector.model], "input_size", None)
            if size is not None and rt.camera.detector.regions not in ("off", ()):
                rt.regions = RegionPlanner.for_camera(rt.camera, (int(size[0]), int(size[1])))

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
        self._start_analysis()
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
        now = time.time()
        for i in range(len(runtimes)):
            index = (self._next_camera + i) % len(runtimes)
            rt = runtimes[index]
            frame = rt.slot.take()
            if frame is None:
                continue
            if self._stale(rt, frame, now):
                rt.stale_waiting += 1
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
        self._stop_analysis()
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
            def publish() -> None:
                try:
                    publish_health(self.sink, check.events, check.reports)
                except EventsAtRisk as exc:
                    self._sink_at_risk(exc)
                except Exception:
                    log.exception("camera health: event sink failed on %d event(s)", len(check.events))
            self._hand_over(publish)
        return check.events

    # -- the analysis thread --------------------------------------------------------------------

    def _start_analysis(self) -> None:
        if self._analysis_thread is None:
            self._analysis_thread = threading.Thread(target=self._analysis_loop, name="analysis", daemon=True)
            self._analysis_thread.start()

    def _stop_analysis(self, timeout: float = 30.0) -> None:
        """Let the analysis thread finish what it was handed, then end it."""
        thread, self._analysis_thread = self._analysis_thread, None
        if thread is None:
            return
        self._put(thread, None)
        thread.join(timeout)
        if thread.is_alive():
            log.error("analysis thread did not finish within %.0f s; abandoned", timeout)

    def _hand_over(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the analysis thread (in order), or here when there is none."""
        thread = self._analysis_thread
        if thread is None or not self._put(thread, work):
            work()

    def _put(self, thread: threading.Thread, item: Callable[[], None] | None) -> bool:
        while thread.is_alive():
            try:
                self._analysis.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _analysis_loop(self) -> None:
        while True:
            work = self._analysis.get()
            if work is None:
                return
            try:
                work()
            except Exception:  # every piece of work guards itself; this is the last line
                log.exception("analysis thread: unexpected failure; continuing")

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
                detections = detect_with_regions(self.detectors[model], [f.image for f in group],
                                                 [self._tiles(f) for f in group])
            except Exception:
                log.exception("model %s: detection failed on a batch of %d frame(s); batch skipped",
                              model, len(group))
                continue
            share = (time.perf_counter() - t0) / len(group)
            for frame in group:
                self.cameras[frame.camera_id].metrics.stage["infer"].add(share)
            self._hand_over(functools.partial(self._analyse_group, group, detections))

    def _tiles(self, frame: Frame) -> tuple[Tile, ...]:
        """The frame's tiles (zone-focused detection); a camera whose setting cannot be planned on its
        frames says why once and runs on the whole frame."""
        rt = self.cameras[frame.camera_id]
        if rt.regions is None:
            return ()
        try:
            return rt.regions.tiles((frame.width, frame.height))
        except ModelError as exc:
            log.error("%s; the camera runs on the whole frame only", exc)
            rt.regions = None
            return ()

    def _analyse_group(self, group: list[Frame], detections: list[Detections]) -> None:
        for frame, dets in zip(group, detections, strict=True):
            rt = self.cameras[frame.camera_id]
            if self._stale(rt, frame, time.time()):
                rt.stale_analysis += 1
                continue
            self._analyse_one(rt, frame, dets)

    def _stale(self, rt: CameraRuntime, frame: Frame, now: float) -> bool:
        """True for a frame older than ``stale_after_s``: overloaded, skip it, the camera's next
        frame comes fresher (see :data:`STALE_AFTER_S`) — unless the camera has gone
        ``STARVED_AFTER_INTERVALS`` analysis intervals without an analysed frame, when this one is
        analysed however late (see :data:`STARVED_AFTER_INTERVALS`)."""
        if self.stale_after_s is None or now - frame.wall_time <= self.stale_after_s:
            return False
        return time.monotonic() - rt.last_analysed <= STARVED_AFTER_INTERVALS / rt.camera.analysis_fps

    def _analyse_one(self, rt: CameraRuntime, frame: Frame, dets: Detections) -> None:
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
            rt.last_analysed = time.monotonic()
        self._note_report(rt)
        if events:
            rt.metrics.events += len(events)
            try:
                self.sink.publish(events)
            except EventsAtRisk as exc:
                self._sink_at_risk(exc)
            except Exception:
                log.exception("camera %s: event sink failed on %d event(s)", rt.camera.id, len(events))

    def _sink_at_risk(self, exc: EventsAtRisk) -> None:
        """The sink cannot keep what it is given: stop rather than lose events."""
        if self.fatal is None:
            log.critical("stopping: %s", exc)
            self.fatal = exc
        self.request_stop()

    @staticmethod
    def _note_report(rt: CameraRuntime) -> None:
        """The camera's metrics from the analyzer's report of the frame (``analyzer.last``, a
        :class:`rules.analyzer.FrameReport`; an analyzer without one adds nothing): detections per
        class past the score thresholds (the analyzer applied them), distinct and current tracks."""
        report = getattr(rt.analyzer, "last", None)
        kept = getattr(report, "kept", None)
        if kept is not None:
            rt.metrics.add_detections(COCO80[c] for c in kept.class_id.tolist())
        tracks = getattr(report, "tracks", None)
        if tracks is None:
            return
        rt.track_ids.update(int(t.track_id) for t in tracks)
        rt.metrics.extra["tracks"] = len(rt.track_ids)
        rt.metrics.extra["tracks_now"] = len(tracks)

    # -- reporting ------------------------------------------------------------------------------

    def _metrics_snapshot(self) -> list[CameraMetrics]:
        for rt in self.cameras.values():
            stale = rt.stale_waiting + rt.stale_analysis
            rt.metrics.frames_dropped = rt.slot.dropped + stale
            rt.metrics.extra["frames_stale"] = stale
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
