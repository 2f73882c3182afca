"""Verification checks (step 5 of the loop): is the problem of a zone still there in a few frames?

What counts as "still there" per zone type:

* ``no_parking`` — a detection of one of the zone's vehicle classes whose ground point (bottom
  centre) lies in the zone;
* ``no_vending`` — a detection of one of the zone's stall classes in the zone;
* ``keep_clear`` — a detection of a class outside the zone's ignore list in the zone (the
  detector knows no branches by name; this is the weakest of the three checks).

The problem counts as present when it is seen in at least ``present_fraction`` of the frames.
No frame at all means it cannot be verified: reported present, with an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from camera_config.schema import KeepClearZone, NoParkingZone, NoVendingZone
from core.coco import COCO80
from core.types import Detections, Frame
from pipeline.zones import build_zone_mask

Image = npt.NDArray[np.uint8]
DetectFn = Callable[[Sequence[Image]], list[Detections]]

AnyZone = NoParkingZone | NoVendingZone | KeepClearZone


@dataclass(frozen=True, slots=True)
class ZoneCheck:
    """Which detections count as the problem still being there, for one zone."""

    zone: AnyZone
    class_ids: frozenset[int]
    min_score: float

    @classmethod
    def for_zone(cls, zone: AnyZone, default_score: float) -> ZoneCheck:
        if isinstance(zone, NoParkingZone):
            names, score = set(zone.vehicle_classes), zone.min_score
        elif isinstance(zone, NoVendingZone):
            names, score = set(zone.stall_classes), zone.min_score
        else:
            names, score = set(COCO80) - set(zone.ignore_classes), default_score
        return cls(zone, frozenset(COCO80.index(n) for n in names), score)

    def boxes_in_zone(self, dets: Detections, width: int, height: int) -> list[dict[str, Any]]:
        keep = np.array([int(c) in self.class_ids for c in dets.class_id], dtype=bool) \
            & (dets.score >= self.min_score)
        if not keep.any():
            return []
        mask = build_zone_mask(self.zone, width, height)
        inside = mask.contains_boxes(dets.xyxy[keep])
        out = []
        for xyxy, score, cls_id in zip(dets.xyxy[keep][inside], dets.score[keep][inside],
                                       dets.class_id[keep][inside], strict=True):
            out.append({"label": COCO80[int(cls_id)], "score": round(float(score), 3),
                        "xyxy": [round(float(v), 1) for v in xyxy]})
        return out


def check_zone(frames: Sequence[Frame], detect: DetectFn, check: ZoneCheck, *,
               present_fraction: float = 0.5) -> dict[str, Any]:
    """Run the detector on ``frames`` and say whether the problem is still in the zone."""
    if not frames:
        return {"present": True, "frames": 0, "frames_present": 0, "boxes": [],
                "error": "no frames from the camera: cannot verify"}
    detections = detect([f.image for f in frames])
    seen = 0
    boxes: list[dict[str, Any]] = []
    for frame, dets in zip(frames, detections, strict=True):
        hits = check.boxes_in_zone(dets, frame.width, frame.height)
        if hits:
            seen += 1
            boxes = hits  # the latest frame's boxes are the evidence
    return {"present": seen >= present_fraction * len(frames), "frames": len(frames), "frames_present": seen,
            "boxes": boxes}
