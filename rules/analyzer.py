"""The per-camera analyzer: detections in, incident events out.

``CameraAnalyzer.process(frame, detections) -> list[IncidentEvent]`` runs, for one analysed frame:
detector score thresholds from the camera config (:class:`rules.scores.ScoreThresholds`) ->
tracker -> every zone's rule, built from its kind in :mod:`rules.registry` and gated by the zone's
schedule here, for every zone alike -> lifecycle. Background models (keep_clear zones, the shared
stall-occupancy one) are told of people and vehicles down to ``detector.ignore_score`` (the weak
detections, :meth:`~rules.scores.ScoreThresholds.weak`); rules act on the thresholded ones.
It never runs a detector itself, so detection and analysis stay separable: :func:`replay`
iterates frames, asks a ``detect(frame)`` callable (a live detector via :func:`detector_fn`, or a
cache of per-frame detections) and feeds the analyzer. Rules are built on the first frame, when
the frame size is known (zone masks are runtime state, never config).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import numpy as np

from camera_config.schema import Camera, NoVendingZone, SiteConfig, ZoneBase
from core.coco import CLASS_ID
from core.errors import PatrolError
from core.events import IncidentEvent
from core.types import Detections, Frame, Track
from models.stall_signal import StallRegion, StallScorer, shared_scorer
from pipeline.sampler import TimeSampler
from pipeline.tracking import ObjectTracker
from pipeline.zones import schedule_active
from rules.background import DualBackground, StaticRegion
from rules.findings import Finding, Rule
from rules.lifecycle import IncidentLifecycle, ZonePolicy
from rules.registry import OccupancyFed, RuleContext, RuleKind, WeakFed, kinds_of
from rules.scores import ScoreThresholds
from rules.stall import StallRule

log = logging.getLogger("patrol.analyzer")

DetectFn = Callable[[Frame], Detections]
MOVERS = frozenset(CLASS_ID[n] for n in ("person", "bicycle", "car", "motorcycle", "bus", "truck"))


@dataclass(frozen=True)
class FrameReport:
    """What the analyzer saw in one frame (for engineers tuning a camera)."""

    pts: float
    kept: Detections
    """The detections past the camera's score thresholds (what the tracker and the rules saw); the
    worker counts them per class from here, so the thresholds run once per frame."""
    tracks: tuple[Track, ...]
    findings: tuple[Finding, ...]
    events: tuple[IncidentEvent, ...]
    rule_states: tuple[dict[str, Any], ...] = ()
    """Debug mode only: each zone's ``rule.debug_state(pts)`` (its clocks and why it fires or not), in
    zone order; ``{"zone", "rule", "items": [...]}``, ``"off_schedule": True`` while the zone sleeps."""

    @property
    def detections(self) -> int:
        """How many detections passed the thresholds."""
        return len(self.kept)


class CameraAnalyzer:
    """One camera's analysis state: tracker, rules per zone, incident lifecycle.

    ``rules[i]`` is the rule of ``camera.zones[i]``, of the zone's kind (:attr:`kinds`); a zone
    type without a registered kind is an :class:`rules.registry.UnknownRuleKind` here, at once.
    """

    def __init__(self, camera: Camera, timezone: str = "UTC", tracker: ObjectTracker | None = None,
                 static_occupancy: bool = True, debug: bool = False,
                 stall_scorer: StallScorer | Literal["auto"] | None = "auto") -> None:
        """``static_occupancy=False`` skips the camera's shared background model that feeds the rule
        kinds with ``static_occupancy`` (for scripted scenes whose frames carry no pixels).
        ``debug=True`` fills :attr:`last` with each rule's state (:attr:`FrameReport.rule_states`).
        ``stall_scorer`` (:func:`models.stall_signal.shared_scorer`) feeds the no_vending zones'
        ``stall_model`` signal, run every ``model_interval_s`` of stream time; ``"auto"`` loads the
        process's shared scorer when a no_vending zone weighs that signal (``patrol run``, replay and eval
        then analyse alike), None runs without it."""
        self.stall_scorer = _stall_scorer_for(camera) if stall_scorer == "auto" else stall_scorer
        self._stall_regions: list[StallRegion] = []
        self._stall_scored_at: float | None = None
        self.debug = debug
        self.camera = camera
        self.kinds: tuple[RuleKind[Any], ...] = kinds_of(camera.zones, f"camera {camera.id!r}")
        self.static_occupancy = static_occupancy
        self.tz = ZoneInfo(timezone)
        self.tracker = tracker or ObjectTracker()
        self.lifecycle = IncidentLifecycle(camera.id, camera.grid_cell,
                                           {z.id: ZonePolicy.of(z) for z in camera.zones})
        self.rules: list[Rule] = []
        self.background: Any = None
        self.frame_size: tuple[int, int] | None = None
        self.thresholds = ScoreThresholds(camera.detector)
        self.last: FrameReport | None = None
        self._context: RuleContext | None = None
        self._on_schedule: list[bool] = []
        self._pts_offset = 0.0
        self._last: tuple[float, float] | None = None  # (analysis pts, wall time) of the last frame

    def _build(self, frame_size: tuple[int, int]) -> None:
        self.frame_size = frame_size
        self._context = RuleContext(frame_size, self.tz)
        self.rules = [kind.rule(zone, self._context) for zone, kind in zip(self.camera.zones, self.kinds, strict=True)]
        self._on_schedule = [True] * len(self.rules)
        self._stall_regions, self._stall_scored_at = [], None
        if self.static_occupancy and any(kind.static_occupancy for kind in self.kinds):
            self.background = DualBackground(long_term_s=120.0, short_term_s=10.0)

    def _continuous(self, frame: Frame) -> Frame:
        """Keep the analysis clock moving forward when a source reconnects and its pts restart:
        later frames are shifted to follow on by the wall time that passed (events then carry
        this continuous clock in ``stream_pts``), so dwell clocks and incidents survive."""
        pts = frame.pts + self._pts_offset
        if self._last is not None and pts <= self._last[0]:
            last_pts, last_wall = self._last
            step = frame.wall_time - last_wall
            if not step > 0:
                step = 1.0 / self.camera.analysis_fps
            self._pts_offset = last_pts + step - frame.pts
            log.info("camera %s: stream time restarted (pts %.3f after %.3f); analysis clock continues",
                     self.camera.id, frame.pts, last_pts)
            pts = frame.pts + self._pts_offset
        self._last = (pts, frame.wall_time)
        return frame if pts == frame.pts else _replace_pts(frame, pts)

    def process(self, frame: Frame, detections: Detections) -> list[IncidentEvent]:
        """Analyse one frame with its detections; return the lifecycle events it causes."""
        size = (frame.width, frame.height)
        if size != self.frame_size:
            if self.frame_size is not None:
                log.warning("camera %s: frame size changed from %s to %s; zone rules start afresh",
                            self.camera.id, self.frame_size, size)
            self.rules, self.background = [], None
            self._build(size)
        frame = self._continuous(frame)
        dets = self.thresholds(detections)
        weak = self.thresholds.weak(detections)
        tracks = self.tracker.update(frame.pts, dets)
        regions: list[StaticRegion] = []
        if self.background is not None:
            movers = weak[np.isin(weak.class_id, list(MOVERS))]
            regions = self.background.update(frame.image, frame.pts,
                                             ignore_boxes=[tuple(map(float, b)) for b in movers.xyxy])
        self._score_stalls(frame)
        findings: list[Finding] = []
        for i, (zone, kind) in enumerate(zip(self.camera.zones, self.kinds, strict=True)):
            findings.extend(self._run_zone(i, zone, kind, frame, tracks, dets, weak, regions))
        events = self.lifecycle.step(frame, findings)
        self.last = FrameReport(frame.pts, dets, tuple(tracks), tuple(findings), tuple(events),
                                self._rule_states(frame) if self.debug else ())
        return events

    def _rule_states(self, frame: Frame) -> tuple[dict[str, Any], ...]:
        """Each zone's rule state after this frame (its ``debug_state(pts)``, when it has one)."""
        states = []
        for zone, rule, on in zip(self.camera.zones, self.rules, self._on_schedule, strict=True):
            hook = getattr(rule, "debug_state", None)
            state: dict[str, Any] = hook(frame.pts) if hook is not None else {"zone": zone.id, "items": []}
            states.append({**state, "off_schedule": not on})
        return tuple(states)

    def _run_zone(self, i: int, zone: ZoneBase, kind: RuleKind[Any], frame: Frame, tracks: Sequence[Track],
                  dets: Detections, weak: Detections, regions: Sequence[StaticRegion]) -> list[Finding]:
        """Zone ``i``'s findings this frame, under its schedule (see :data:`rules.registry.OffSchedule`)."""
        active = schedule_active(zone.schedule, frame.wall_time, self.tz)
        was_active, self._on_schedule[i] = self._on_schedule[i], active
        if not active and kind.off_schedule == "reset":
            if was_active and self._context is not None:
                self.rules[i] = kind.rule(zone, self._context)  # what it counted is forgotten
            return []
        rule = self.rules[i]
        if kind.static_occupancy:
            cast(OccupancyFed, rule).static_regions = regions
        if kind.weak_detections:
            cast(WeakFed, rule).weak_detections = weak
        if isinstance(rule, StallRule):
            rule.model_regions = self._stall_regions
        found = rule.update(frame, tracks, dets)
        return found if active else []

    def _score_stalls(self, frame: Frame) -> None:
        """The learned stall signal's regions, renewed every ``model_interval_s`` (the shortest of the
        camera's no_vending zones that weigh it) and held in between."""
        if self.stall_scorer is None:
            return
        intervals = [z.model_interval_s for z in self.camera.zones
                     if isinstance(z, NoVendingZone) and z.weights.stall_model > 0]
        if intervals and (self._stall_scored_at is None or frame.pts - self._stall_scored_at >= min(intervals)):
            self._stall_regions = self.stall_scorer.regions(frame.image)
            self._stall_scored_at = frame.pts


def camera_analyzer(camera: Camera, site: SiteConfig) -> CameraAnalyzer:
    """The analyzer factory ``patrol run`` gives :class:`pipeline.worker.PatrolWorker` (the worker never
    imports the rules: they build on the pipeline). A camera with a no_vending zone that weighs
    ``stall_model`` gets the process's shared stall scorer; one that cannot load runs without it."""
    return CameraAnalyzer(camera, site.site.timezone)


def _stall_scorer_for(camera: Camera) -> StallScorer | None:
    if not any(isinstance(z, NoVendingZone) and z.weights.stall_model > 0 for z in camera.zones):
        return None
    try:
        return shared_scorer()
    except PatrolError as exc:
        log.warning("camera %s: the learned stall signal is off: %s", camera.id, exc)
        return None


def _replace_pts(frame: Frame, pts: float) -> Frame:
    return Frame(camera_id=frame.camera_id, pts=pts, wall_time=frame.wall_time, image=frame.image,
                 keyframe=frame.keyframe)


def sample(frames: Iterable[Frame], fps: float) -> Iterator[Frame]:
    """Time-based decimation to ``fps`` by stream time (:class:`pipeline.sampler.TimeSampler`).

    A frame up to a quarter interval early still counts for its slot, so frames a source has
    already sampled at this rate pass through unchanged; a pts going backwards is dropped (some
    AVI files report B-frames out of order), so the analysed clock only moves forward.
    """
    if fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"sample: fps must be positive, got {fps}")
    sampler = TimeSampler(1.0 / fps, tolerance_s=0.25 / fps)
    last: float | None = None
    for frame in frames:
        if last is not None and frame.pts <= last:
            continue
        if sampler.due(frame.pts):
            last = frame.pts
            yield frame


def detector_fn(detector: Any) -> DetectFn:
    """Adapt a models.base Detector (``detect(list of images)``) to one frame at a time."""
    def detect(frame: Frame) -> Detections:
        dets: Detections = detector.detect([frame.image])[0]
        return dets
    return detect


def replay(camera: Camera, frames: Iterable[Frame], detect: DetectFn, timezone: str = "UTC",
           analysis_fps: float | None = None) -> Iterator[IncidentEvent]:
    """Run one camera's pipeline over recorded frames (their own pts as the clock).

    ``frames`` are decoded frames of the clip; with ``analysis_fps`` they are first decimated by
    stream time to that rate (pass every decoded frame), without it they are taken as already
    sampled. Each is detected with ``detect`` (a detector via :func:`detector_fn`, or a lookup in
    a detection cache) and analysed. Deterministic: the same frames and detections give the same
    events.
    """
    analyzer = CameraAnalyzer(camera, timezone)
    for frame in (sample(frames, analysis_fps) if analysis_fps else frames):
        yield from analyzer.process(frame, detect(frame))


def replay_detections(camera: Camera, items: Iterable[tuple[Frame, Detections]],
                      timezone: str = "UTC") -> list[IncidentEvent]:
    """Analyse frames that already carry their detections (a detection cache); no sampling."""
    analyzer = CameraAnalyzer(camera, timezone)
    events: list[IncidentEvent] = []
    for frame, dets in items:
        events.extend(analyzer.process(frame, dets))
    return events

