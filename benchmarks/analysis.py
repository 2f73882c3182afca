"""What happens to an analysed frame after detection, identical for our pipeline and the baseline:
the project's tracker, a parking rule on a no-parking zone over the lower half of the picture (the
kerb of the benchmark street), and the incident lifecycle. Timed per stage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from alerts.events import IncidentEvent
from alerts.lifecycle import IncidentLifecycle, ZonePolicy
from alerts.parking import ParkingRule
from camera_config.schema import NoParkingZone
from pipeline.tracking import ObjectTracker
from pipeline.types import Detections, Frame

BENCH_ZONE = NoParkingZone.model_validate({
    "id": "kerb", "type": "no_parking", "polygon": [[0.0, 0.45], [1.0, 0.45], [1.0, 1.0], [0.0, 1.0]],
    "limit_s": 20.0,
})


@dataclass(slots=True)
class StageTimes:
    """Seconds spent in each post-detection stage for one frame."""

    track_s: float = 0.0
    rules_s: float = 0.0
    events: list[IncidentEvent] = field(default_factory=list)


class CameraAnalysis:
    """One camera's tracker, rules and lifecycle; ``step`` once per analysed frame."""

    def __init__(self, camera_id: str, frame_size: tuple[int, int]) -> None:
        self.camera_id = camera_id
        self.frame_size = frame_size
        self.tracker = ObjectTracker()
        self.rules = [ParkingRule(BENCH_ZONE, frame_size)]
        self.lifecycle = IncidentLifecycle(camera_id=camera_id, grid_cell="bench",
                                           policies={BENCH_ZONE.id: ZonePolicy.of(BENCH_ZONE)})
        self._last_pts: float | None = None

    def step(self, frame: Frame, detections: Detections) -> StageTimes:
        """Track, apply rules and advance incidents; frames whose pts does not increase are skipped."""
        out = StageTimes()
        if self._last_pts is not None and frame.pts <= self._last_pts:
            return out
        self._last_pts = frame.pts
        t0 = time.perf_counter()
        tracks = self.tracker.update(frame.pts, detections)
        t1 = time.perf_counter()
        findings = [f for rule in self.rules for f in rule.update(frame, tracks, detections)]
        out.events = self.lifecycle.step(frame, findings)
        out.track_s, out.rules_s = t1 - t0, time.perf_counter() - t1
        return out


def scale_detections(dets: Detections, sx: float, sy: float) -> Detections:
    """Boxes found on a downscaled picture, mapped to the camera's native pixels."""
    if len(dets) == 0 or (sx == 1.0 and sy == 1.0):
        return dets
    xyxy = dets.xyxy * np.asarray([sx, sy, sx, sy], dtype=np.float32)
    return Detections(xyxy, dets.score, dets.class_id)
