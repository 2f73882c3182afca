"""Zone-focused detection in the worker: every camera's tiles ride in the same batched detect call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from camera_config.loader import parse_config
from core.coco import CLASS_ID
from core.fakes import ListSink
from core.types import Detections, Frame
from pipeline.worker import PatrolWorker

FAR_KERB = [[0.55, 0.30], [0.80, 0.30], [0.80, 0.42], [0.55, 0.42]]


class TileAwareDetector:
    """Sees a small car only in images of at most its input size (a tile, or a small frame)."""

    name = "tile-aware"
    input_size = (416, 416)
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
            if w <= 416 and h <= 416:
                out.append(Detections(np.array([[w / 2 - 12, h / 2 - 8, w / 2 + 12, h / 2 + 8]], np.float32),
                                      np.array([0.6], np.float32), np.array([CLASS_ID["car"]], np.int32)))
            else:
                out.append(Detections.empty())
        return out


class Keep:
    def __init__(self) -> None:
        self.seen: list[tuple[Frame, Detections]] = []

    def process(self, frame: Frame, detections: Detections) -> list[Any]:
        self.seen.append((frame, detections))
        return []


def test_tiles_of_every_camera_go_in_the_one_batch_and_come_back_in_frame_pixels() -> None:
    cams = [{"id": "far", "url": "a.mp4", "grid_cell": "G",
             "zones": [{"id": "kerb", "type": "no_parking", "polygon": FAR_KERB}]},
            {"id": "off", "url": "b.mp4", "grid_cell": "G", "detector": {"regions": "off"},
             "zones": [{"id": "kerb", "type": "no_parking", "polygon": FAR_KERB}]},
            {"id": "small", "url": "c.mp4", "grid_cell": "G",
             "zones": [{"id": "kerb", "type": "no_parking", "polygon": FAR_KERB}]}]
    site = parse_config({"site": {"name": "w"}, "cameras": cams})
    det = TileAwareDetector()
    analyzers: dict[str, Keep] = {}
    worker = PatrolWorker(site, detector_loader=lambda _m, _s: det, sink=ListSink(), stale_after_s=None,
                          analyzer_factory=lambda cam, _site: analyzers.setdefault(cam.id, Keep()))
    worker.load_detectors()
    hd = np.zeros((1080, 1920, 3), np.uint8)
    for cid, image in (("far", hd), ("off", hd), ("small", np.zeros((300, 400, 3), np.uint8))):
        worker.cameras[cid].slot.put(Frame(camera_id=cid, pts=0.0, wall_time=1.7e9, image=image))
    assert worker.step() == 3
    plan = worker.cameras["far"].regions.tiles((1920, 1080))  # type: ignore[union-attr]
    assert len(plan) == 2
    # one call: the 1080p frame and its two tiles, the camera with regions off, the small frame alone
    assert det.batches == [[(1920, 1080), *(t.size for t in plan), (1920, 1080), (400, 300)]]
    far = analyzers["far"].seen[0][1]
    centres = sorted((round(float(b[0] + b[2]) / 2), round(float(b[1] + b[3]) / 2)) for b in far.xyxy)
    assert centres == sorted((round((t.x1 + t.x2) / 2), round((t.y1 + t.y2) / 2)) for t in plan)
    assert len(analyzers["off"].seen[0][1]) == 0  # the whole frame only: the small car is missed
    assert len(analyzers["small"].seen[0][1]) == 1  # 400x300 is not shrunk: no tiles, the frame itself


def test_a_setting_that_cannot_be_planned_runs_the_camera_on_the_whole_frame(caplog: Any) -> None:
    site = parse_config({"site": {"name": "w"}, "cameras": [
        {"id": "all", "url": "a.mp4", "grid_cell": "G", "detector": {"regions": [{"box": [0, 0, 1, 1]}]}}]})
    det = TileAwareDetector()
    keep = Keep()
    worker = PatrolWorker(site, detector_loader=lambda _m, _s: det, sink=ListSink(), stale_after_s=None,
                          analyzer_factory=lambda _cam, _site: keep)
    worker.load_detectors()
    for pts in (0.0, 1.0):
        worker.cameras["all"].slot.put(Frame(camera_id="all", pts=pts, wall_time=1.7e9 + pts,
                                             image=np.zeros((1080, 1920, 3), np.uint8)))
        worker.step()
    assert det.batches == [[(1920, 1080)], [(1920, 1080)]]
    assert len(keep.seen) == 2  # analysed all the same
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "camera 'all': detector.regions asks for 18 tiles" in errors[0]
