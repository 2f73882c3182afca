"""One object is one region, one incident: a real-foliage branch broken into pieces on the real
kerb clip (vehicle_counting_input_video, 640x352, real traffic going on around it).

From 5 s on, the overhanging tree's foliage from the clip's own first frame (x 40..106, y 40..110)
is pasted onto the carriageway as three strips 22 px wide with 16 px of road between them, like a
branch that broke as it fell. 16 px is 8 working pixels: beyond the fixed merge gap (5), within
half a piece's size (35 working px tall), so only merging relative to size joins them. Expected:
one incident, typed once as a fallen branch, its evidence box over all three pieces. With a slab of
pavement pasted 60 px to the left (from 8 s), two incidents.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camera_config.schema import KeepClearZone
from core.events import IncidentEvent
from core.types import Frame
from rules.lifecycle import IncidentLifecycle, ZonePolicy
from rules.obstruction import ObstructionRule

pytestmark = pytest.mark.slow

LIMIT_S = 10.0
WALL_BASE = 1_772_413_200.0
ROAD = ((0.33, 0.36), (0.62, 0.36), (1.0, 0.75), (1.0, 1.0), (0.4, 1.0))  # the carriageway
BRANCH_FROM = (40, 40, 106, 110)  # foliage of the overhanging tree in the first frame
PIECES_X = (420, 458, 496)  # three 22 px strips, 16 px apart, at y 270..340
PIECE_W = 22
SLAB_FROM = (170, 270, 230, 330)  # concrete pavement in the first frame
SLAB_AT = (300, 250)


def replay(asset_path, detector, with_slab: bool) -> list[IncidentEvent]:
    path = asset_path("vehicle_counting_input_video")
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    fps = cap.get(cv2.CAP_PROP_FPS)
    step = max(1, round(fps / 2.0))
    zone = KeepClearZone(id="road", type="keep_clear", polygon=ROAD, limit_s=LIMIT_S)
    rule: ObstructionRule | None = None
    lifecycle = IncidentLifecycle("street", "JD-0101", {zone.id: ZonePolicy.of(zone)})
    events: list[IncidentEvent] = []
    branch = slab = None
    index = 0
    try:
        while cap.grab():
            if index % step == 0:
                ok, image = cap.retrieve()
                assert ok
                if branch is None:
                    x1, y1, x2, y2 = BRANCH_FROM
                    branch = image[y1:y2, x1:x2].copy()
                    x1, y1, x2, y2 = SLAB_FROM
                    slab = image[y1:y2, x1:x2].copy()
                pts = index / fps
                if pts >= 5.0:
                    for k, x in enumerate(PIECES_X):
                        image[270:340, x:x + PIECE_W] = branch[:, k * PIECE_W:(k + 1) * PIECE_W]
                if with_slab and pts >= 8.0 and slab is not None:
                    x, y = SLAB_AT
                    image[y:y + slab.shape[0], x:x + slab.shape[1]] = slab
                rule = rule or ObstructionRule(zone, (image.shape[1], image.shape[0]))
                frame = Frame("street", pts, WALL_BASE + pts, np.asarray(image, np.uint8))
                events += lifecycle.step(frame, rule.update(frame, [], detector.detect([image])[0]))
            index += 1
    finally:
        cap.release()
    for e in events:
        print(f"{e.stream_pts:6.1f} s {e.event:8s} {e.type:14s} at {e.location} box {e.evidence.boxes[0].xyxy}")
    return events


def test_a_branch_in_three_pieces_is_one_incident_of_one_type(asset_path, yolox_detector) -> None:
    events = replay(asset_path, yolox_detector, with_slab=False)
    opened = [e for e in events if e.event == "opened"]
    assert len(opened) == 1, [(e.stream_pts, e.location, e.evidence.boxes[0].xyxy) for e in opened]
    assert {e.type for e in events} == {"fallen_branch"}
    assert 5.0 + LIMIT_S <= (opened[0].stream_pts or 0) <= 5.0 + LIMIT_S + 5.0
    # the evidence box spans the pieces: from the first strip's left to the last strip's right
    x1, _, x2, _ = opened[0].evidence.boxes[0].xyxy
    assert x1 == pytest.approx(PIECES_X[0], abs=6) and x2 == pytest.approx(PIECES_X[-1] + PIECE_W, abs=6)


def test_two_objects_apart_are_two_incidents(asset_path, yolox_detector) -> None:
    events = replay(asset_path, yolox_detector, with_slab=True)
    opened = [e for e in events if e.event == "opened"]
    assert sorted(e.type for e in opened) == ["fallen_branch", "obstruction"], \
        [(e.stream_pts, e.type, e.location) for e in opened]
