"""Shared harness for the rule tables: a camera with zones, a scripted scene, a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from camera_config.schema import Camera
from core.events import IncidentEvent
from core.fakes import FakeClock, Scene, ScriptedDetector, ScriptedObject
from rules.analyzer import CameraAnalyzer

# Monday 09:00 in Shanghai: inside every schedule the tables use unless they say otherwise
MONDAY_9AM = "2026-03-02T09:00:00+08:00"


@dataclass
class Run:
    events: list[IncidentEvent]
    analyzer: CameraAnalyzer

    def of(self, kind: str) -> list[IncidentEvent]:
        return [e for e in self.events if e.event == kind]

    @property
    def opened_pts(self) -> list[float]:
        return [e.stream_pts or 0.0 for e in self.of("opened")]


RunScene = Callable[..., Run]


@pytest.fixture
def run_scene() -> RunScene:
    def run(zones: Sequence[dict], objects: Sequence[ScriptedObject], duration_s: float,
            start: str = MONDAY_9AM, fps: float = 2.0) -> Run:
        camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "JD-0101",
                                        "analysis_fps": fps, "zones": list(zones)})
        clock = FakeClock.at(start, fps=fps, camera_id="cam-1", size=(640, 360))
        detector = ScriptedDetector.from_scene(Scene(objects, size=(640, 360)), fps)
        # the fake clock's frames are black: no background model (static occupancy is tested directly)
        analyzer = CameraAnalyzer(camera, "Asia/Shanghai", static_occupancy=False)
        events: list[IncidentEvent] = []
        for frame in clock.frames(duration_s):
            events.extend(analyzer.process(frame, detector.detect([frame.image])[0]))
        return Run(events, analyzer)

    return run
