"""What happens to an analysed frame after detection, identical for every runner: the project's
:class:`rules.analyzer.CameraAnalyzer` (score thresholds, tracker, one rule per zone, incident
lifecycle) on a camera with one zone of each type, timed per stage (tracking vs rules)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camera_config.schema import Camera
from core.events import IncidentEvent
from core.types import Detections, Frame
from rules.analyzer import CameraAnalyzer

BENCH_ZONES: tuple[dict[str, Any], ...] = (
    # the benchmark street: parked cars along the kerb, the pavement, the carriageway
    {"id": "kerb", "type": "no_parking", "polygon": [[0, 0.55], [1, 0.55], [1, 1], [0, 1]]},
    {"id": "pavement", "type": "no_vending", "polygon": [[0, 0.3], [0.35, 0.3], [0.35, 1], [0, 1]]},
    {"id": "road", "type": "keep_clear", "polygon": [[0.3, 0.3], [0.7, 0.3], [0.9, 1], [0.1, 1]]},
)


BENCH_REGIONS: tuple[dict[str, Any], ...] = ({"box": [0.25, 0.22, 0.60, 0.45]},)
"""``detector.regions`` of the benchmark's "regions on" trials: the far end of the street, where the
source clip's far cars stand (12-30 px long in its 640x352 frames). On 1080p frames it is 672x248 px,
two tiles at native resolution: what ``auto`` gives one far zone at most
(:data:`models.regions.AUTO_MAX_TILES_PER_ZONE`). The benchmark zones themselves are large, near
zones: ``auto`` (the default) plans no tile on them."""


def bench_camera(camera_id: str, url: str, analysis_fps: float, model: str,
                 zone_types: tuple[str, ...] | None = None, regions: Any = None) -> dict[str, Any]:
    """A camera entry (as in a site YAML) with the benchmark zones, all or only ``zone_types``;
    ``regions`` is its ``detector.regions`` (None: the default)."""
    zones = [z for z in BENCH_ZONES if zone_types is None or z["type"] in zone_types]
    detector: dict[str, Any] = {"model": model} if regions is None else {"model": model, "regions": regions}
    return {"id": camera_id, "url": url, "grid_cell": "bench", "analysis_fps": analysis_fps,
            "detector": detector, "zones": zones}


@dataclass(slots=True)
class StageTimes:
    """Seconds spent in each post-detection stage for one frame."""

    track_s: float = 0.0
    rules_s: float = 0.0
    events: list[IncidentEvent] = field(default_factory=list)


class TimedTracking:
    """Wraps an analyzer's tracker so the analyzer's time splits into tracking and rules."""

    def __init__(self, analyzer: Any) -> None:
        self.track_s = 0.0
        tracker = getattr(analyzer, "tracker", None)
        if tracker is None:
            return
        update = tracker.update

        def timed_update(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return update(*args, **kwargs)
            finally:
                self.track_s = time.perf_counter() - t

        tracker.update = timed_update


class CameraAnalysis:
    """One camera's real analyzer; ``step`` once per analysed frame."""

    def __init__(self, camera_id: str, model: str = "yolox_nano_416") -> None:
        camera = Camera.model_validate(bench_camera(camera_id, "rtsp://127.0.0.1/bench", 0.5, model))
        self.analyzer = CameraAnalyzer(camera, "UTC")
        self.timing = TimedTracking(self.analyzer)
        self._last_pts: float | None = None

    def step(self, frame: Frame, detections: Detections) -> StageTimes:
        """Analyse one frame; frames whose pts does not increase are skipped (tracker contract)."""
        out = StageTimes()
        if self._last_pts is not None and frame.pts <= self._last_pts:
            return out
        self._last_pts = frame.pts
        self.timing.track_s = 0.0
        t0 = time.perf_counter()
        out.events = self.analyzer.process(frame, detections)
        spent = time.perf_counter() - t0
        out.track_s, out.rules_s = self.timing.track_s, spent - self.timing.track_s
        return out


def scale_detections(dets: Detections, sx: float, sy: float) -> Detections:
    """Boxes found on a downscaled picture, mapped to another picture size."""
    if len(dets) == 0 or (sx == 1.0 and sy == 1.0):
        return dets
    xyxy = dets.xyxy * np.asarray([sx, sy, sx, sy], dtype=np.float32)
    return Detections(xyxy, dets.score, dets.class_id)
