"""Zones at run time: pixel masks built from normalised config polygons, and schedules.

Config stays pure (normalised polygons, HH:MM windows); this module builds the runtime
state from it for one frame size: a boolean mask per zone, membership tested at the
ground point (bottom centre) of a box, and the schedule evaluated in the site's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import numpy.typing as npt

from camera_config.schema import ALL_WEEKDAYS, Schedule, ZoneBase


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def schedule_active(schedule: Schedule | None, wall_time: float, tz: ZoneInfo) -> bool:
    """Whether ``schedule`` is active at Unix time ``wall_time`` in time zone ``tz``.

    No schedule means always active. A window whose ``end`` is before its ``start`` wraps
    past midnight and belongs to the weekday it starts on (Fri 22:00-06:00 covers Sat 03:00).
    ``start == end`` means the whole day.
    """
    if schedule is None:
        return True
    local = datetime.fromtimestamp(wall_time, tz)
    now = local.hour * 60 + local.minute + local.second / 60.0
    today = ALL_WEEKDAYS[local.weekday()]
    yesterday = ALL_WEEKDAYS[(local - timedelta(days=1)).weekday()]
    for window in schedule.windows:
        start, end = _minutes(window.start), _minutes(window.end)
        if start == end:
            if today in window.weekdays:
                return True
        elif start < end:
            if today in window.weekdays and start <= now < end:
                return True
        else:  # wraps past midnight
            if today in window.weekdays and now >= start:
                return True
            if yesterday in window.weekdays and now < end:
                return True
    return False


@dataclass(frozen=True)
class ZoneMask:
    """One zone rasterised for one frame size."""

    zone: ZoneBase
    width: int
    height: int
    polygon_px: npt.NDArray[np.int32]
    mask: npt.NDArray[np.bool_]

    @property
    def zone_id(self) -> str:
        return self.zone.id

    @property
    def area_frac(self) -> float:
        return float(self.mask.mean())

    def contains(self, points: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """For (N, 2) pixel points, whether each lies inside the zone (off-frame points do not)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        # a box's bottom edge sits at y2 == height for objects cut by the frame border
        xs = np.floor(pts[:, 0]).astype(np.int64)
        ys = np.floor(np.minimum(pts[:, 1], self.height - 1e-3)).astype(np.int64)
        ok = (xs >= 0) & (xs < self.width) & (ys >= 0) & (ys < self.height)
        out = np.zeros(len(pts), dtype=bool)
        out[ok] = self.mask[ys[ok], xs[ok]]
        return out

    def contains_boxes(self, xyxy: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """For (N, 4) boxes, whether each box's ground point (bottom centre) is inside."""
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        return self.contains(np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1))

    def overlap_frac(self, xyxy: tuple[float, float, float, float]) -> float:
        """Fraction of a pixel box's area that lies inside the zone."""
        x1, y1, x2, y2 = (round(v) for v in xyxy)
        x1, x2 = max(0, x1), min(self.width, x2)
        y1, y2 = max(0, y1), min(self.height, y2)
        if x2 <= x1 or y2 <= y1:
            return 0.0
        return float(self.mask[y1:y2, x1:x2].mean())


def build_zone_mask(zone: ZoneBase, width: int, height: int) -> ZoneMask:
    """Rasterise ``zone``'s normalised polygon for a ``width`` x ``height`` frame."""
    if width <= 0 or height <= 0:
        raise ValueError(f"zone {zone.id!r}: frame size must be positive, got {width}x{height}")
    poly = np.array([(round(x * width), round(y * height)) for x, y in zone.polygon], dtype=np.int32)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [poly.reshape(-1, 1, 2)], 1)
    return ZoneMask(zone=zone, width=width, height=height, polygon_px=poly, mask=mask.astype(bool))
