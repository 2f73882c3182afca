"""Verification checks (step 5 of the loop): is the problem of a zone still there in a few frames?

What counts as "still there" per zone type:

* ``no_parking`` — a detection of one of the zone's vehicle classes whose ground point (bottom
  centre) lies in the zone;
* ``no_vending`` — a detection of one of the zone's stall classes in the zone;
* ``keep_clear`` — a detection of a class outside the zone's ignore list in the zone (the
  detector knows no branches by name; this is the weakest of the three checks).

Each zone type's check is declared with its rule in :mod:`rules.registry`; :func:`rules.registry.zone_check`
reads it there, and a zone type with no registered rule kind is an error, never another type's check.
The problem counts as present when it is seen in at least ``present_fraction`` of the frames.
No frame at all means it cannot be verified: reported present, with an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from camera_config.schema import KeepClearZone, NoParkingZone, NoVendingZone, ZoneBase
from core.coco import CLASS_ID, COCO80
from core.types import Detections, Frame
from pipeline.zones import build_zone_mask

Image = npt.NDArray[np.uint8]
DetectFn = Callable[[Sequence[Image]], list[Detections]]


@dataclass(frozen=True, slots=True)
class ZoneCheck:
    """Which detections count as the problem still being there, for one zone."""

    zone: ZoneBase
    class_ids: frozenset[int]
    min_score: float

    @classmethod
    def of_classes(cls, zone: ZoneBase, names: Iterable[str], min_score: float) -> ZoneCheck:
        """Detections of the COCO classes ``names`` at ``min_score`` or more, ground point in the zone."""
        return cls(zone, frozenset(CLASS_ID[n] for n in names), min_score)

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


def vehicle_check(zone: NoParkingZone, default_score: float) -> ZoneCheck:
    """``no_parking``: one of the zone's vehicle classes in the zone."""
    return ZoneCheck.of_classes(zone, zone.vehicle_classes, zone.min_score)


def stall_check(zone: NoVendingZone, default_score: float) -> ZoneCheck:
    """``no_vending``: one of the zone's stall classes in the zone."""
    return ZoneCheck.of_classes(zone, zone.stall_classes, zone.min_score)


def not_ignored_check(zone: KeepClearZone, default_score: float) -> ZoneCheck:
    """``keep_clear``: any class outside the zone's ignore list, at the camera's default score."""
    return ZoneCheck.of_classes(zone, sorted(set(COCO80) - set(zone.ignore_classes)), default_score)


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
