"""The ByteTrack wrapper at low analysis rates, and the place memory that survives id swaps."""

from __future__ import annotations

import numpy as np
import pytest

from core.coco import CLASS_ID
from core.types import Detections
from pipeline.tracking import ObjectTracker, PlaceMemory, Sighting, covered_frac, is_moving


def dets(*items: tuple[str, tuple[float, float, float, float], float]) -> Detections:
    if not items:
        return Detections.empty()
    return Detections(np.array([b for _, b, _ in items], np.float32), np.array([s for _, _, s in items], np.float32),
                      np.array([CLASS_ID[c] for c, _, _ in items], np.int32))


def test_parked_car_keeps_its_id_at_one_fps_with_skipped_frames() -> None:
    tracker = ObjectTracker(lost_after_s=3.0)
    ids = set()
    for t in [0.0, 1.0, 2.0, 4.5, 5.5, 6.0, 8.0]:  # irregular steps, up to 2.5 s apart
        tracks = tracker.update(t, dets(("car", (100, 100, 200, 160), 0.8)))
        ids.update(tr.track_id for tr in tracks)
    assert len(ids) == 1
    (track,) = tracker.tracks
    assert track.first_seen == 1.0  # ByteTrack confirms on the second sighting
    assert track.last_seen == 8.0
    assert track.stationary_for(0.1) == pytest.approx(7.0)
    assert [p[0] for p in track.positions] == [1.0, 2.0, 4.5, 5.5, 6.0, 8.0]


def test_track_is_dropped_after_lost_time_and_comes_back_with_a_new_id() -> None:
    tracker = ObjectTracker(lost_after_s=3.0)
    car = ("car", (100, 100, 200, 160), 0.8)
    first = {t.track_id for t0 in (0.0, 1.0, 2.0) for t in tracker.update(t0, dets(car))}
    tracker.update(3.0, dets())
    tracker.update(6.5, dets())
    assert tracker.tracks == []
    later = {t.track_id for t0 in (7.0, 8.0) for t in tracker.update(t0, dets(car))}
    assert later and first.isdisjoint(later)


def test_person_next_to_a_table_never_takes_its_id() -> None:
    tracker = ObjectTracker()
    for t in range(5):
        tracks = tracker.update(float(t), dets(("dining table", (100, 100, 200, 160), 0.7),
                                               ("person", (150 + 10 * t, 60, 190 + 10 * t, 160), 0.8)))
    by_class = {tr.class_id: tr.track_id for tr in tracks}
    assert set(by_class) == {CLASS_ID["dining table"], CLASS_ID["person"]}
    assert len(set(by_class.values())) == 2


def test_class_flicker_between_car_and_truck_is_one_track_with_majority_class() -> None:
    tracker = ObjectTracker()
    for t, cls in enumerate(["car", "truck", "car", "car", "truck", "car"]):
        tracks = tracker.update(float(t), dets((cls, (100, 100, 200, 160), 0.8)))
    (track,) = tracks
    assert track.class_id == CLASS_ID["car"]


def test_pts_must_increase() -> None:
    tracker = ObjectTracker()
    tracker.update(1.0, dets())
    with pytest.raises(ValueError, match="pts must increase"):
        tracker.update(1.0, dets())


def test_moving_track_is_told_from_a_jittering_one() -> None:
    tracker = ObjectTracker()
    for t in range(6):  # 20 px/s on a 100 px car: moving; 3 px wobble: not
        moving = tracker.update(t * 0.5, dets(("car", (100 + 10 * t, 100, 200 + 10 * t, 160), 0.8)))
    tracker2 = ObjectTracker()
    for t in range(6):
        still = tracker2.update(t * 0.5, dets(("car", (100 + 3 * (t % 2), 100, 200 + 3 * (t % 2), 160), 0.8)))
    assert is_moving(moving[0], 0.25)
    assert not is_moving(still[0], 0.25)


def s(box, cls="car", tid=None) -> Sighting:
    return Sighting(box, 0.8, CLASS_ID[cls], tid)


def test_place_memory_keeps_the_clock_through_gaps_and_id_changes() -> None:
    mem = PlaceMemory(tolerance=0.25, forget_after_s=8.0)
    box = (100.0, 100.0, 200.0, 160.0)
    mem.update(0.0, [s(box, tid=1)])
    mem.update(1.0, [s(box, tid=1)])
    mem.update(2.0, [])          # missed
    mem.update(6.0, [s((104.0, 101.0, 203.0, 161.0), tid=7)])  # back after 4 s, new id, jitter
    (st,) = mem.alive()
    assert st.since == 0.0 and st.last_seen == 6.0
    assert st.track_ids == {1, 7}
    assert st.seen_s == pytest.approx(1.0)   # only 0->1 was seen on both ends
    assert st.coverage(6.0) == pytest.approx(1 / 6)


def test_place_memory_forgets_and_restarts_on_drift() -> None:
    mem = PlaceMemory(tolerance=0.25, forget_after_s=5.0)
    mem.update(0.0, [s((100.0, 100.0, 200.0, 160.0))])
    mem.update(1.0, [s((140.0, 100.0, 240.0, 160.0))])  # 40 px drift on a 100 px box: not the same place
    assert [st.since for st in mem.alive()] == [0.0, 1.0]
    mem.update(6.5, [])
    assert mem.alive() == []


def test_occluder_counts_as_present_for_coverage_but_not_as_seen() -> None:
    mem = PlaceMemory(tolerance=0.25, forget_after_s=8.0)
    car = (100.0, 100.0, 200.0, 160.0)
    bus = (50.0, 40.0, 260.0, 200.0)
    mem.update(0.0, [s(car)])
    mem.update(1.0, [], occluders=[bus])
    mem.update(2.0, [s(car)])
    (st,) = mem.alive()
    assert st.seen_s == pytest.approx(2.0) and st.last_seen == 2.0


def test_size_mismatch_is_another_object() -> None:
    mem = PlaceMemory(tolerance=0.25, forget_after_s=8.0)
    mem.update(0.0, [s((100.0, 100.0, 200.0, 160.0))])
    mem.update(1.0, [s((60.0, 0.0, 260.0, 160.0), "bus")])  # same ground point, twice the size
    assert len(mem.alive()) == 2


def test_covered_frac() -> None:
    assert covered_frac((0, 0, 10, 10), (5, 0, 20, 10)) == pytest.approx(0.5)
    assert covered_frac((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
