"""Zone-focused detection (models/regions.py): the tile planner, the merge, one detect call per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from camera_config.schema import Camera
from core.coco import CLASS_ID
from core.errors import ModelError
from core.types import Detections
from models.regions import (
    AUTO_MAX_TILES_PER_ZONE,
    RegionDetector,
    RegionPlanner,
    Tile,
    detect_with_regions,
    merge_tiles,
    plan_tiles,
    shrink_factor,
    with_regions,
)

NET = (416, 416)
CAR = CLASS_ID["car"]
FAR_KERB = [[0.55, 0.30], [0.80, 0.30], [0.80, 0.42], [0.55, 0.42]]  # far end of a street: small in the frame
NEAR_KERB = [[0.0, 0.55], [1.0, 0.55], [1.0, 1.0], [0.0, 1.0]]  # the benchmark street's kerb: most of the frame


def camera(regions: Any = "auto", polygons: Sequence[Any] = (FAR_KERB,)) -> Camera:
    zones = [{"id": f"z{i}", "type": "no_parking", "polygon": p} for i, p in enumerate(polygons)]
    return Camera.model_validate({"id": "cam", "url": "x.mp4", "grid_cell": "G", "zones": zones,
                                  "detector": {"regions": regions}})


def tiles(cam: Camera, frame: tuple[int, int]) -> tuple[Tile, ...]:
    return RegionPlanner.for_camera(cam, NET).tiles(frame)


def covers(plan: Sequence[Tile], box: Sequence[float]) -> bool:
    return any(t.x1 <= box[0] and t.y1 <= box[1] and t.x2 >= box[2] and t.y2 >= box[3] for t in plan)


@pytest.mark.parametrize(("frame", "regions", "polygons", "expected"), [
    ((1920, 1080), "auto", [FAR_KERB], 2),          # shrunk 4.6x, far zone 480x130 px: two native tiles
    ((960, 540), "auto", [FAR_KERB], 1),            # shrunk 2.3x (issue 13's junction clip)
    ((800, 450), "auto", [FAR_KERB], 0),            # shrunk 1.9x: the whole frame is enough
    ((640, 352), "auto", [FAR_KERB], 0),
    ((1920, 1080), "auto", [NEAR_KERB], 0),         # near zone needs 10 tiles: its objects are large
    ((1920, 1080), "off", [FAR_KERB], 0),
    ((800, 450), "zones", [FAR_KERB], 1),           # zones: whatever the frame size
    ((1920, 1080), "zones", [FAR_KERB, FAR_KERB], 2),  # a zone already covered adds nothing
    ((800, 450), [{"box": [0, 0, 1, 0.5]}], [], 3),  # 800 px wide in 416-px tiles overlapping >= 83 px
    ((1920, 1080), [], [FAR_KERB], 0),
])
def test_planner_table(frame: tuple[int, int], regions: Any, polygons: Any, expected: int) -> None:
    plan = tiles(camera(regions, polygons), frame)
    assert len(plan) == expected, plan
    for t in plan:  # never larger than the network input: native resolution or closer
        assert 0 <= t.x1 < t.x2 <= frame[0] and 0 <= t.y1 < t.y2 <= frame[1]
        assert t.size[0] <= NET[0] and t.size[1] <= NET[1]


def test_tiles_cover_the_zone_with_room_above_and_overlap() -> None:
    plan = tiles(camera("auto"), (1920, 1080))
    assert len(plan) == AUTO_MAX_TILES_PER_ZONE
    x1, y1, x2, y2 = 0.55 * 1920, 0.30 * 1080, 0.80 * 1920, 0.42 * 1080
    assert min(t.x1 for t in plan) <= x1 and max(t.x2 for t in plan) >= x2
    assert all(t.y1 <= y1 - 100 and t.y2 >= y2 for t in plan)  # a car standing at the zone's top edge fits
    left, right = sorted(plan, key=lambda t: t.x1)
    assert left.x2 - right.x1 >= 0.2 * NET[0]
    car = (left.x2 - 60, 330, left.x2 - 10, 360)  # a far car straddling the seam lies whole in one tile
    assert covers(plan, car)


def test_shrink_factor_is_the_letterbox_one() -> None:
    assert shrink_factor((1920, 1080), NET) == pytest.approx(4.615, abs=1e-3)
    assert shrink_factor((960, 540), NET) == pytest.approx(2.308, abs=1e-3)


def test_too_many_tiles_is_an_error_naming_the_camera_and_the_areas() -> None:
    with pytest.raises(ModelError, match=r"camera 'cam': detector.regions asks for 18 tiles.*regions\[0\]: 18"):
        tiles(camera([{"box": [0, 0, 1, 1]}]), (1920, 1080))


def test_bad_crop_box_is_refused_by_the_config() -> None:
    with pytest.raises(ValidationError, match="x1 < x2"):
        camera([{"box": [0.5, 0, 0.2, 1]}])
    with pytest.raises(ValidationError, match="regions"):
        camera("sometimes")


def dets(rows: Sequence[tuple[float, float, float, float, float, int]]) -> Detections:
    if not rows:
        return Detections.empty()
    a = np.asarray(rows, np.float32)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int32))


def test_merge_maps_back_suppresses_duplicates_and_cut_boxes() -> None:
    frame = (1000, 500)
    left, right = Tile(100, 0, 516, 300), Tile(400, 0, 816, 300)
    full = dets([(600, 350, 900, 480, 0.9, CAR),       # a near car: only the whole frame sees it
                 (150, 100, 175, 118, 0.35, CAR)])      # a far car, weakly
    in_left = dets([(50, 100, 76, 118, 0.7, CAR),       # the same far car, better: replaces it by NMS
                    (380, 40, 416, 60, 0.8, CAR),       # cut by the left tile's inner right edge: dropped
                    (200, 20, 220, 34, 0.6, CLASS_ID["person"])])
    in_right = dets([(0, 40, 40, 60, 0.5, CAR),         # cut by the right tile's inner left edge: dropped
                     (20, 40, 60, 60, 0.75, CAR)])      # the same car whole in the right tile
    merged = merge_tiles(full, [left, right], [in_left, in_right], frame)
    got = sorted((tuple(round(float(v)) for v in b), round(float(s), 2), int(c))
                 for b, s, c in zip(merged.xyxy, merged.score, merged.class_id, strict=True))
    assert got == [((150, 100, 176, 118), 0.7, CAR), ((300, 20, 320, 34), 0.6, CLASS_ID["person"]),
                   ((420, 40, 460, 60), 0.75, CAR), ((600, 350, 900, 480), 0.9, CAR)]


def test_frame_edges_are_not_cuts() -> None:
    frame = (800, 300)
    tile = Tile(384, 0, 800, 300)  # its right and top edges are the frame's
    merged = merge_tiles(Detections.empty(), [tile], [dets([(380, 0, 416, 30, 0.6, CAR)])], frame)
    assert merged.xyxy.tolist() == [[764, 0, 800, 30]]


class RecordingDetector:
    """Answers each image with one car box in its middle; records the batches it was given."""

    name = "recording"
    input_size = NET
    iou_threshold = 0.45

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def warmup(self) -> None:
        return None

    def detect(self, images: Sequence[Any]) -> list[Detections]:
        self.batches.append([(img.shape[1], img.shape[0]) for img in images])
        out = []
        for img in images:
            h, w = img.shape[:2]
            out.append(dets([(w / 2 - 10, h / 2 - 5, w / 2 + 10, h / 2 + 5, float(img[0, 0, 0]) / 255, CAR)]))
        return out


def test_one_detect_call_for_every_frame_and_tile() -> None:
    det = RecordingDetector()
    big = np.full((1080, 1920, 3), 200, np.uint8)
    small = np.full((360, 640, 3), 100, np.uint8)
    plan = tiles(camera("auto"), (1920, 1080))
    out = detect_with_regions(det, [big, small], [plan, ()])
    assert len(det.batches) == 1
    assert det.batches[0] == [(1920, 1080), *(t.size for t in plan), (640, 360)]
    assert len(out[1]) == 1 and out[1].xyxy.tolist() == [[310, 175, 330, 185]]  # untouched
    centres = {(round(float(b[0] + b[2]) / 2), round(float(b[1] + b[3]) / 2)) for b in out[0].xyxy}
    assert (960, 540) in centres  # the whole frame's box
    assert all((round((t.x1 + t.x2) / 2), round((t.y1 + t.y2) / 2)) in centres for t in plan)  # each tile's


def test_region_detector_and_with_regions() -> None:
    det = RecordingDetector()
    wrapped = with_regions(det, camera("auto"))
    assert isinstance(wrapped, RegionDetector)
    wrapped.detect([np.zeros((1080, 1920, 3), np.uint8), np.zeros((450, 800, 3), np.uint8)])
    assert [len(b) for b in det.batches] == [4]  # 1080p frame + 2 tiles, 800x450 frame alone
    assert with_regions(det, camera("off")) is det


def test_returned_count_mismatch_is_an_error() -> None:
    class Short(RecordingDetector):
        def detect(self, images: Sequence[Any]) -> list[Detections]:
            return super().detect(images)[:1]

    with pytest.raises(ModelError, match="returned 1 results for 3 images"):
        detect_with_regions(Short(), [np.zeros((1080, 1920, 3), np.uint8)], [tiles(camera(), (1920, 1080))])


def test_default_auto_leaves_every_shared_label_clip_on_the_whole_frame() -> None:
    """The shared clips are 320-800 px wide (shrunk at most 1.9x): ``auto`` plans no tile on any of
    them, so the footage tests and `patrol eval` see the same detections as before."""
    from pathlib import Path

    from evaluation.labels import load_labels

    for path in sorted(Path(__file__).parents[2].joinpath("labels").glob("*.yaml")):
        labels = load_labels(path)
        assert labels.camera.detector.regions == "auto"
        assert labels.frame_size is not None
        assert plan_tiles("auto", labels.camera.zones, labels.frame_size, NET) == (), path.name


def test_detection_cache_key_names_the_tiles_only_when_there_are_some() -> None:
    """`patrol eval` caches detections per clip: a camera whose regions plan tiles on the clip gets
    them in its key (another setting is another cache); `auto` on the shared clips keeps the key of
    caches made before regions existed."""
    from pathlib import Path

    from evaluation.labels import load_labels
    from evaluation.replay import cache_key, model_identity, region_tiles

    labels = load_labels(Path(__file__).parents[2] / "labels" / "evadb_street.yaml")
    model = model_identity(labels.camera)
    assert region_tiles(labels, model) == []
    zoned = labels.camera.model_copy(
        update={"detector": labels.camera.detector.model_copy(update={"regions": "zones"})})
    tiles = region_tiles(replace(labels, camera=zoned), model)
    assert tiles and all(x2 - x1 <= 416 and y2 - y1 <= 416 for x1, y1, x2, y2 in tiles)
    plain, with_tiles = cache_key("c0ffee", labels.camera, model), cache_key("c0ffee", zoned, model, tiles)
    assert "region_tiles" not in plain.settings and with_tiles.settings["region_tiles"] == [list(t) for t in tiles]
    assert plain != with_tiles


def test_one_object_seen_at_two_scales_is_one_box() -> None:
    """A far car's loose whole-frame box around the tighter tile box (IoU 0.44, under the NMS
    threshold) is one car; two cars of one source side by side stay two, and so does a person
    standing in front of a car."""
    frame = (1000, 500)
    tile = Tile(200, 0, 616, 300)
    full = dets([(300, 120, 334, 140, 0.41, CAR), (700, 100, 740, 130, 0.8, CAR), (742, 100, 782, 130, 0.7, CAR)])
    in_tile = dets([(104, 122, 119, 137, 0.64, CAR),     # (304, 122, 319, 137) in the frame: inside the loose box
                    (150, 100, 200, 160, 0.7, CAR), (160, 110, 190, 160, 0.6, CLASS_ID["person"])])
    merged = merge_tiles(full, [tile], [in_tile], frame)
    got = sorted((tuple(round(float(v)) for v in b), int(c)) for b, c in zip(merged.xyxy, merged.class_id, strict=True))
    assert got == [((304, 122, 319, 137), CAR), ((350, 100, 400, 160), CAR), ((360, 110, 390, 160), CLASS_ID["person"]),
                   ((700, 100, 740, 130), CAR), ((742, 100, 782, 130), CAR)]
