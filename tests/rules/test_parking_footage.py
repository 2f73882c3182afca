"""Illegal parking on real footage, through the same path as ``patrol replay``
(file source -> 2 fps by stream time -> YOLOX-Nano -> tracker -> rules -> lifecycle).

vehicle_counting_input_video.mp4 (640x352, 24 fps, 37.7 s), looked at frame by frame (PNG
contact sheets at 0, 4, ..., 28 s with a 10 % grid, and the detections drawn):

- on the right edge of the view (x 0.93-1.0, y 0.42-0.54) a silver car stands in a driveway at
  the kerb of the near side for the whole clip; YOLOX-Nano finds it in every analysed frame
  (ground point at about (0.965, 0.543)). A no_parking zone over that kerb space must raise
  exactly one incident, once the 12 s limit has passed (12 s is the first analysed frame at or
  after the limit), and keep it open (the car never leaves).
- the two near lanes of the main road (the asphalt below y = 0.5 between the left kerb and the
  yellow lines running to the bottom right) carry passing traffic only: a white pick-up (5-11 s),
  a dark saloon (18-22 s) and others drive through without stopping. A zone over them raises none.
- the far side beyond the pink island holds a queue of three cars waiting at the junction for the
  first ~20 s, which then all drive off; they really stand still for 20 s, so a zone there would
  (rightly, by the rule) fire with a 12 s limit -- this test draws no zone there.

car-detection.mp4 (768x432, 12.5 fps, 30 s) is an overhead view of parking-lot asphalt that cars
drive across without stopping: a zone over the whole driving area raises nothing.
"""

from __future__ import annotations

import pytest

from camera_config.schema import Camera
from patrol.commands.replay import clip_frames
from rules.analyzer import detector_fn, replay

pytestmark = pytest.mark.slow

WALL_START = 1_767_574_800.0  # Monday 2026-01-05 09:00 Asia/Shanghai


def camera(zones: list[dict]) -> Camera:
    return Camera.model_validate({"id": "street-1", "url": "clip.mp4", "grid_cell": "JD-0101",
                                  "analysis_fps": 2, "zones": zones})


def run(path, zones, detector) -> list:
    cam = camera(zones)
    frames = clip_frames(path, cam, 2.0, WALL_START)
    return list(replay(cam, frames, detector_fn(detector), "Asia/Shanghai", analysis_fps=2.0))


KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 12,
        "polygon": [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}
LANES = {"id": "lanes", "type": "no_parking", "limit_s": 12,
         "polygon": [[0.37, 0.50], [0.66, 0.50], [1.0, 0.78], [1.0, 1.0], [0.47, 1.0]]}


def test_parked_car_at_the_kerb_raises_one_incident_and_traffic_none(asset_path, yolox_detector) -> None:
    events = run(asset_path("vehicle_counting_input_video"), [KERB, LANES], yolox_detector)
    assert all(e.type == "illegal_parking" for e in events)
    kerb = [e for e in events if e.zone_id == "kerb-right"]
    assert [e.event for e in kerb] == ["opened"], kerb
    (opened,) = kerb
    assert 12.0 <= (opened.stream_pts or 0) < 13.0  # at the limit, not before
    assert opened.location == pytest.approx((0.965, 0.543), abs=0.02)
    assert opened.evidence.boxes[0].label == "car"
    assert opened.event_at - opened.started_at == pytest.approx(opened.evidence.durations["dwell_s"])
    assert [e for e in events if e.zone_id == "lanes"] == []


def test_cars_driving_through_a_lot_raise_nothing(asset_path, yolox_detector) -> None:
    lot = {"id": "lot", "type": "no_parking", "limit_s": 10,
           "polygon": [[0.02, 0.02], [0.98, 0.02], [0.98, 0.98], [0.02, 0.98]]}
    assert run(asset_path("car_detection"), [lot], yolox_detector) == []
