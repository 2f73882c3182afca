"""The incident lifecycle alone, fed findings directly: dedup by place, throttled updates, grace,
cooldown, stable ids."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Evidence, EvidenceBox
from core.types import Frame
from rules.findings import Finding
from rules.lifecycle import IncidentLifecycle, ZonePolicy, material_change

IMG = np.zeros((4, 4, 3), np.uint8)
BASE = 1_767_574_800.0


def frame(pts: float) -> Frame:
    return Frame("cam-1", pts, BASE + pts, IMG)


def finding(place=(0.5, 0.5), started=0.0, signals=None, zone="z1", kind="illegal_parking") -> Finding:
    return Finding(kind, zone, place, started, "high", Evidence(signals=signals or {"stationary_vehicle": 1.0}))


def lifecycle(**kw) -> IncidentLifecycle:
    policy = ZonePolicy(close_grace_s=kw.get("grace", 5.0), cooldown_s=kw.get("cooldown", 20.0),
                        update_interval_s=kw.get("interval", 10.0))
    return IncidentLifecycle("cam-1", "JD-0101", {"z1": policy, "z2": policy})


def run(lc: IncidentLifecycle, script: dict[float, list[Finding]], until: float) -> list:
    events = []
    t = 0.0
    while t <= until:
        events.extend(lc.step(frame(t), script.get(t, [])))
        t += 1.0
    return events


def test_open_once_with_stable_id_and_wall_times() -> None:
    lc = lifecycle()
    events = run(lc, {t: [finding(started=2.0)] for t in range(10, 20)}, 19)
    (ev,) = events
    assert ev.event == "opened" and ev.seq == 1 and ev.severity == "high"
    assert ev.started_at == BASE + 2.0 and ev.event_at == BASE + 10.0 and ev.stream_pts == 10.0
    again = run(lifecycle(), {t: [finding(started=2.0)] for t in range(10, 20)}, 19)
    assert again[0].incident_id == ev.incident_id  # same input, same id (redelivery-safe)


def test_jittering_place_is_one_incident_and_far_place_is_another() -> None:
    script = {float(t): [finding((0.5 + 0.01 * (t % 3), 0.5)), finding((0.8, 0.5))] for t in range(0, 30)}
    events = run(lifecycle(), script, 29)
    assert [e.event for e in events] == ["opened", "opened"]
    assert len({e.incident_id for e in events}) == 2


def test_same_place_in_another_zone_is_another_incident() -> None:
    script = {0.0: [finding(), finding(zone="z2")]}
    events = run(lifecycle(), script, 0)
    assert [e.event for e in events] == ["opened", "opened"]
    assert len({e.incident_id for e in events}) == 2


def boxed(xyxy: tuple[float, float, float, float], kind: str = "obstruction", started: float = 0.0,
          signals: dict[str, float] | None = None) -> Finding:
    """A finding placed like the obstruction rule's: ground point = bottom centre of its box, on a
    100x100 frame (so pixel boxes read as percentages)."""
    x1, _, x2, y2 = xyxy
    evidence = Evidence(boxes=(EvidenceBox(label="static_region", score=1.0, xyxy=xyxy),),
                        signals=signals or {"area_frac": 0.01}, frame_size=(100, 100))
    return Finding(kind, "z1", ((x1 + x2) / 200, y2 / 100), started, "medium", evidence)  # type: ignore[arg-type]


def test_another_type_at_the_same_place_retypes_the_incident_by_an_update() -> None:
    # a branch first typed obstruction, then (the whole region seen) fallen_branch: one incident
    script = {float(t): [boxed((40, 40, 60, 60), "obstruction" if t < 5 else "fallen_branch")]
              for t in range(0, 12)}
    events = run(lifecycle(grace=3.0, interval=60.0), script, 20)
    assert [(e.event, e.type, e.stream_pts) for e in events] == [
        ("opened", "obstruction", 0.0), ("updated", "fallen_branch", 5.0), ("closed", "fallen_branch", 14.0)]
    assert len({e.incident_id for e in events}) == 1


def test_pieces_of_one_object_are_one_incident_and_a_neighbour_another() -> None:
    # an object seen whole, then as pieces whose ground points lie 0.1-0.15 from its own (beyond
    # place_radius) but inside its box: one incident; a neighbour whose box only touches it
    # (parked cars in perspective) is a second problem
    whole = boxed((20, 40, 52, 62))
    pieces = [boxed((20, 40, 30, 55)), boxed((40, 44, 52, 60))]
    neighbour = boxed((48, 30, 80, 50))
    script = {float(t): ([whole] if t < 2 else pieces) + [neighbour] for t in range(0, 10)}
    lc = lifecycle()
    events = run(lc, script, 9)
    opened = [e for e in events if e.event == "opened"]
    assert {e.location for e in opened} == {(0.36, 0.62), (0.64, 0.5)}
    assert lc.open_count == 2


def test_never_two_open_incidents_of_one_zone_whose_places_overlap() -> None:
    # a vehicle's box drifts far from where it was first seen (its ground point moves 0.15) while
    # a second detection of it keeps appearing: still one incident
    script = {float(t): [boxed((10 + t, 40, 40 + t, 70), "illegal_parking"),
                         boxed((12 + 2 * t, 42, 38 + 2 * t, 72), "illegal_parking")] for t in range(0, 15)}
    lc = lifecycle()
    events = run(lc, script, 14)
    assert [e.event for e in events] == ["opened"]
    assert lc.open_count == 1


def test_updates_only_on_material_change_and_throttled() -> None:
    a = {"stall_object": 1.0}
    b = {"stall_object": 1.0, "lingering_person": 0.5}
    script = {float(t): [finding(signals=a if t < 3 else b)] for t in range(0, 40)}
    events = run(lifecycle(interval=10.0), script, 39)
    # opened at 0, change at 3 (pending), first update allowed at 10; no further change -> no more
    assert [(e.event, e.stream_pts, e.seq) for e in events] == [("opened", 0.0, 1), ("updated", 10.0, 2)]


def test_close_after_grace_and_cooldown_before_reopen() -> None:
    script = {float(t): [finding()] for t in [*range(0, 10), *range(20, 30), *range(40, 50)]}
    events = run(lifecycle(grace=5.0, cooldown=20.0), script, 60)
    # closes at 9 + 5 = 14; the place is back at 20 (cooling until 34): suppressed; it goes quiet at
    # 29 (nothing open to close); back at 40, after the cooldown: a new incident, closed at 54
    assert [(e.event, e.stream_pts) for e in events] == [
        ("opened", 0.0), ("closed", 14.0), ("opened", 40.0), ("closed", 54.0)]
    assert events[0].incident_id == events[1].incident_id != events[2].incident_id
    assert events[1].seq == 2 and events[1].evidence.durations["unsupported_s"] == 5.0


def test_gap_shorter_than_grace_keeps_the_incident() -> None:
    script = {float(t): [finding()] for t in [*range(0, 10), *range(13, 20)]}
    events = run(lifecycle(grace=5.0), script, 20)
    assert [e.event for e in events] == ["opened"]


def test_unknown_zone_is_named() -> None:
    with pytest.raises(KeyError, match="unknown zone 'zz'"):
        lifecycle().step(frame(0.0), [finding(zone="zz")])


@pytest.mark.parametrize(("before", "after", "material"), [
    ({"a": 1.0}, {"a": 1.0}, False),
    ({"a": 1.0}, {"a": 1.2}, False),
    ({"a": 1.0}, {"a": 1.5}, True),
    ({"a": 1.0}, {"a": 1.0, "b": 0.5}, True),
    ({"a": 1.0, "b": 0.5}, {"a": 1.0}, True),
])
def test_material_change(before, after, material) -> None:
    assert material_change(Evidence(signals=before), Evidence(signals=after)) is material


@given(st.lists(st.booleans(), min_size=1, max_size=120), st.lists(st.floats(-0.02, 0.02), min_size=2, max_size=2))
@settings(max_examples=60, deadline=None)
def test_lifecycle_invariants_for_one_place(support, jitter) -> None:
    """Whatever the on/off pattern of one problem at one (jittering) place: at most one incident open
    at a time, each incident's events are opened, updated..., closed with seq 1, 2, 3..., and a new
    incident never opens within the cooldown after a close."""
    lc = lifecycle(grace=3.0, cooldown=5.0, interval=2.0)
    events = []
    for t, on in enumerate(support):
        place = (0.5 + jitter[t % 2], 0.5)
        found = [finding(place, started=float(t), signals={"s": float(1 + t // 10)})] if on else []
        events.extend(lc.step(frame(float(t)), found))
        assert lc.open_count <= 1
    by_id: dict[str, list] = {}
    for e in events:
        by_id.setdefault(e.incident_id, []).append(e)
    for evs in by_id.values():
        assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
        assert evs[0].event == "opened"
        assert all(e.event == "updated" for e in evs[1:-1])
        assert evs[-1].event in ("opened", "updated", "closed")
    closes = [e.stream_pts for e in events if e.event == "closed"]
    opens = [e.stream_pts for e in events if e.event == "opened"]
    for c in closes:
        assert not any(c < o < c + 5.0 for o in opens)


def test_scripted_detector_is_a_detector() -> None:
    from core.fakes import Scene, ScriptedDetector, ScriptedObject
    from models.base import Detector

    det = ScriptedDetector.from_scene(Scene([ScriptedObject("car", (0, 0, 10, 10), start=1.0)]), fps=2.0)
    assert isinstance(det, Detector)
    assert [len(d) for d in det.detect([IMG, IMG, IMG])] == [0, 0, 1]  # t = 0, 0.5, 1.0
