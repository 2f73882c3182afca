"""Zone masks (membership at the ground point) and schedules in the site's time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from camera_config.schema import NoParkingZone, Schedule
from pipeline.zones import build_zone_mask, schedule_active

SH = ZoneInfo("Asia/Shanghai")


def zone(polygon, **kw) -> NoParkingZone:
    return NoParkingZone.model_validate({"id": "z", "type": "no_parking", "polygon": polygon, **kw})


def test_mask_covers_the_polygon_in_pixels() -> None:
    m = build_zone_mask(zone([[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]]), 640, 360)
    assert m.mask.shape == (360, 640)
    assert m.area_frac == pytest.approx(0.25, abs=0.01)
    assert m.polygon_px.tolist() == [[320, 180], [640, 180], [640, 360], [320, 360]]


def test_membership_is_tested_at_the_bottom_centre() -> None:
    m = build_zone_mask(zone([[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]]), 640, 360)
    boxes = np.array([
        [400, 100, 500, 250],   # top outside, ground point (450, 250) inside -> in
        [400, 100, 500, 170],   # ground point above the zone -> out
        [250, 200, 350, 300],   # straddles the left edge, ground (300, 300) outside -> out
        [300, 200, 400, 300],   # ground (350, 300) inside -> in
        [500, 300, 700, 360],   # cut by the frame border, ground at the bottom row -> in
    ], np.float32)
    assert m.contains_boxes(boxes).tolist() == [True, False, False, True, True]


def test_points_off_the_frame_are_outside() -> None:
    m = build_zone_mask(zone([[0, 0], [1, 0], [1, 1], [0, 1]]), 100, 50)
    assert m.contains([[-1, 10], [100, 10], [50, -3], [50, 49.5]]).tolist() == [False, False, False, True]


def test_overlap_fraction_of_a_box() -> None:
    m = build_zone_mask(zone([[0.5, 0], [1, 0], [1, 1], [0.5, 1]]), 100, 100)
    assert m.overlap_frac((25, 0, 75, 100)) == pytest.approx(0.5, abs=0.02)
    assert m.overlap_frac((0, 0, 10, 10)) == 0.0
    assert m.overlap_frac((200, 200, 300, 300)) == 0.0


def test_frame_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="zone 'z': frame size must be positive"):
        build_zone_mask(zone([[0, 0], [1, 0], [1, 1]]), 0, 10)


@given(st.floats(0.05, 0.95), st.floats(0.05, 0.95), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_rectangle_membership_matches_geometry(x0, y0, px, py) -> None:
    """A point clearly inside an axis-aligned rectangle zone is in; clearly outside is out."""
    x1, y1 = min(x0 + 0.3, 1.0), min(y0 + 0.3, 1.0)
    m = build_zone_mask(zone([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), 200, 100)
    inside = x0 * 200 + 2 < px * 200 < x1 * 200 - 2 and y0 * 100 + 2 < py * 100 < y1 * 100 - 2
    outside = px * 200 < x0 * 200 - 2 or px * 200 > x1 * 200 + 2 or py * 100 < y0 * 100 - 2 or py * 100 > y1 * 100 + 2
    got = bool(m.contains([[px * 200, py * 100]])[0])
    if inside:
        assert got
    if outside:
        assert not got


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


VENDING = Schedule.model_validate({"windows": [{"start": "07:00", "end": "21:00"}]})
BUS_STOP_WEEKDAYS = Schedule.model_validate(
    {"windows": [{"start": "06:00", "end": "22:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]}]})
NIGHT_MARKET = Schedule.model_validate({"windows": [{"start": "22:00", "end": "02:00", "weekdays": ["fri", "sat"]}]})


@pytest.mark.parametrize(("schedule", "when", "active"), [
    (None, "2026-03-02T03:00:00+08:00", True),
    (VENDING, "2026-03-02T06:59:59+08:00", False),
    (VENDING, "2026-03-02T07:00:00+08:00", True),
    (VENDING, "2026-03-02T20:59:59+08:00", True),
    (VENDING, "2026-03-02T21:00:00+08:00", False),  # end is exclusive
    (VENDING, "2026-03-01T23:30:00+00:00", True),   # 07:30 on Monday in Shanghai: the site's zone counts
    (BUS_STOP_WEEKDAYS, "2026-03-06T12:00:00+08:00", True),   # Friday
    (BUS_STOP_WEEKDAYS, "2026-03-07T12:00:00+08:00", False),  # Saturday
    (NIGHT_MARKET, "2026-03-06T23:00:00+08:00", True),   # Friday night
    (NIGHT_MARKET, "2026-03-07T01:30:00+08:00", True),   # early Saturday: Friday's window wraps past midnight
    (NIGHT_MARKET, "2026-03-08T01:30:00+08:00", True),   # early Sunday: Saturday's window
    (NIGHT_MARKET, "2026-03-09T01:30:00+08:00", False),  # early Monday: no Sunday window
    (NIGHT_MARKET, "2026-03-07T02:00:00+08:00", False),
    (NIGHT_MARKET, "2026-03-05T23:00:00+08:00", False),  # Thursday
])
def test_schedule_in_site_time(schedule, when, active) -> None:
    assert schedule_active(schedule, at(when), SH) is active


def test_whole_day_window() -> None:
    allday = Schedule.model_validate({"windows": [{"start": "00:00", "end": "00:00", "weekdays": ["sun"]}]})
    assert schedule_active(allday, at("2026-03-01T23:59:00+08:00"), SH)
    assert not schedule_active(allday, at("2026-03-02T00:01:00+08:00"), SH)
