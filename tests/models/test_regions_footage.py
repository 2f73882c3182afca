"""Issue 13, acceptance 3: zone-focused detection on shared clips finds small far vehicles the whole
frame misses, and loses none the whole frame finds.

The two street clips with far traffic (evadb: 800x450, far cars at the top of the carriageway;
vehicle_counting: 640x352, cars beyond the island) are replayed at their label files' analysis rate
with the label files' cameras and ``detector.regions: zones`` (tiles around every zone: these frames
are shrunk less than 2x, so ``auto`` — the default — leaves them on the whole frame, see
tests/models/test_regions.py). Several of the boxes found only with regions were looked at on the
frames: real cars, 12-28 px long.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from core.coco import CLASS_ID, COCO80
from evaluation.labels import load_labels
from evaluation.replay import sample_frames
from models.regions import CONTAINED, RegionDetector, RegionPlanner

LABELS = Path(__file__).parents[2] / "labels"
VEHICLES = [CLASS_ID[n] for n in ("car", "truck", "bus", "motorcycle")]
SMALL_PX = 40
"""A vehicle whose longer side is at most this many frame pixels counts as small."""


def overlaps(box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float64], ...]:
    """(IoU, intersection over the smaller box) of ``box`` with each of ``boxes``."""
    if len(boxes) == 0:
        return np.zeros(0), np.zeros(0)
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area, areas = np.prod(box[2:] - box[:2]), np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return (np.asarray(inter / (area + areas - inter), np.float64),
            np.asarray(inter / np.minimum(area, areas), np.float64))


def iou(box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    return overlaps(box, boxes)[0]


@pytest.mark.parametrize("label_file", ["evadb_street.yaml", "vehicle_counting_kerb.yaml"])
def test_regions_find_small_far_vehicles_and_lose_none(label_file: str, yolox_detector: Any) -> None:
    labels = load_labels(LABELS / label_file)
    camera = labels.camera.model_copy(update={"detector": labels.camera.detector.model_copy(
        update={"regions": "zones"})})
    regional = RegionDetector(yolox_detector, RegionPlanner.for_camera(camera, yolox_detector.input_size))
    threshold = camera.detector.default_score
    iou_nms = yolox_detector.iou_threshold
    only_with_regions: list[str] = []
    lost: list[str] = []
    frames = 0
    for frame in sample_frames(labels.clip, camera.id, camera.analysis_fps):
        frames += 1
        full = yolox_detector.detect([frame.image])[0]
        merged = regional.detect([frame.image])[0]
        full = full[np.isin(full.class_id, VEHICLES) & (full.score >= threshold)]
        merged = merged[np.isin(merged.class_id, VEHICLES) & (merged.score >= threshold)]
        for box, score, cls in zip(full.xyxy, full.score, full.class_id, strict=True):
            # kept, or replaced by a better box of its class: by NMS, or the same object at two scales
            better = (merged.class_id == cls) & (merged.score >= score)
            by_iou, inside = overlaps(box, merged.xyxy[better])
            if not ((by_iou > iou_nms - 1e-6) | (inside >= CONTAINED - 1e-6)).any():
                lost.append(f"t={frame.pts:.1f} {COCO80[cls]} {score:.2f} {box.round().tolist()}")
        for box, score, cls in zip(merged.xyxy, merged.score, merged.class_id, strict=True):
            small = max(box[2] - box[0], box[3] - box[1]) <= SMALL_PX
            if small and not (iou(box, full.xyxy) >= 0.3).any():
                only_with_regions.append(f"t={frame.pts:.1f} {COCO80[cls]} {score:.2f} {box.round().tolist()}")
    tiles = regional.planner.tiles(labels.frame_size or (0, 0))
    print(f"\n{label_file}: {frames} frames, {len(tiles)} tiles {[(t.x1, t.y1, t.x2, t.y2) for t in tiles]}; "
          f"{len(only_with_regions)} small vehicles found only with regions:")
    print("\n".join(f"  {line}" for line in only_with_regions))
    assert frames >= 10
    assert only_with_regions, "no small vehicle found with regions that the whole frame misses"
    assert not lost, f"whole-frame vehicles lost with regions: {lost}"
