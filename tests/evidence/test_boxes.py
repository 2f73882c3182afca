"""boxes.json beside a clip: pre-roll frames kept, post-roll collected, times from the clip's first packet."""

from __future__ import annotations

import json
from pathlib import Path

from core.coco import CLASS_ID
from core.types import Track
from evidence.boxes import BOXES, BoxTrails


def _car(track_id: int, x: float) -> Track:
    return Track(track_id=track_id, class_id=CLASS_ID["car"], first_seen=0.0, last_seen=0.0,
                 xyxy=(x, 10.0, x + 40.0, 50.0), score=0.876)


def test_boxes_span_the_clip_and_count_from_its_start(tmp_path: Path) -> None:
    trails = BoxTrails(keep_s=6.0)
    for k in range(20):  # 0.0 .. 9.5 s at 2 fps
        trails.observe("cam", k * 0.5, [_car(7, 100 + k)])
    trails.observe("other", 9.6, [_car(1, 0)])  # another camera's frames never mix in
    inc = trails.start("cam", "inc-0000001", tmp_path / BOXES, from_pts=9.5 - 6.0, end_pts=9.5 + 2.0,
                       frame_size=(640, 360))
    trails.observe("cam", 10.0, [_car(7, 120), _car(9, 300)])
    inc.clip_written(start_pts=4.0, end_pts=11.5)  # first packet (a keyframe) at 4.0 s
    doc = json.loads((tmp_path / BOXES).read_text())
    assert doc["frame_size"] == [640, 360] and doc["clip_start_pts"] == 4.0
    assert [f["t"] for f in doc["frames"]] == [k * 0.5 for k in range(13)]  # 4.0 .. 10.0 s, from the clip's 0
    assert doc["frames"][0]["boxes"] == [{"track_id": 7, "class": "car", "score": 0.876,
                                          "xyxy": [108.0, 10.0, 148.0, 50.0]}]
    assert [b["track_id"] for b in doc["frames"][-1]["boxes"]] == [7, 9]
    trails.observe("cam", 11.0, [_car(7, 121)])
    trails.observe("cam", 12.0, [_car(7, 122)])  # past the post-roll end: written again, complete, done
    doc = json.loads((tmp_path / BOXES).read_text())
    assert doc["frames"][-1]["t"] == 7.0 and inc.complete
    trails.observe("cam", 12.5, [_car(7, 123)])
    assert json.loads((tmp_path / BOXES).read_text()) == doc  # no longer collecting


def test_a_restarted_stream_starts_a_new_trail(tmp_path: Path) -> None:
    trails = BoxTrails(keep_s=10.0)
    trails.observe("cam", 50.0, [_car(1, 0)])
    trails.observe("cam", 1.0, [_car(2, 0)])  # reconnected: the clock starts again
    inc = trails.start("cam", "inc-0000002", tmp_path / BOXES, from_pts=0.0, end_pts=5.0, frame_size=(64, 64))
    assert [f.pts for f in inc.frames] == [1.0]
