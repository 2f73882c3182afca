"""Reconciling open incidents at a stop and after a restart (issue 14 item 3), the lifecycle alone:
``close_all`` leaves nothing open; ``resume`` continues an incident the first findings confirm at
its place (same id, next seq, no second incident) and closes the others with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from core.events import Evidence, IncidentType
from core.types import Frame
from rules.findings import Finding
from rules.lifecycle import RESTARTED, STOPPED, IncidentLifecycle, LeftOpen, ZonePolicy

IMG = np.zeros((4, 4, 3), np.uint8)
BASE = 1_767_574_800.0


def frame(pts: float) -> Frame:
    return Frame("cam-1", pts, BASE + pts, IMG)


def finding(place: tuple[float, float] = (0.5, 0.5), zone: str = "z1",
            kind: IncidentType = "illegal_parking") -> Finding:
    return Finding(kind, zone, place, 0.0, "high", Evidence(signals={"stationary_vehicle": 1.0}))


def lifecycle(resume_within_s: float = 20.0) -> IncidentLifecycle:
    policy = ZonePolicy(close_grace_s=5.0, cooldown_s=20.0, update_interval_s=10.0, resume_within_s=resume_within_s)
    return IncidentLifecycle("cam-1", "JD-0101", {"z1": policy, "z2": policy})


def left(incident_id: str = "inc-left-0001", place: tuple[float, float] | None = (0.5, 0.5), zone: str | None = "z1",
         last_seq: int = 3) -> LeftOpen:
    return LeftOpen(incident_id, "illegal_parking", zone, place, "high", BASE - 500.0, last_seq)


def run(lc: IncidentLifecycle, script: dict[float, list[Finding]], until: float) -> list:
    events = []
    t = 0.0
    while t <= until:
        events.extend(lc.step(frame(t), script.get(t, [])))
        t += 1.0
    return events


def test_close_all_closes_every_open_incident_with_the_reason() -> None:
    lc = lifecycle()
    opened = run(lc, {0.0: [finding(), finding((0.9, 0.5))]}, 2)
    assert [e.event for e in opened] == ["opened", "opened"] and lc.open_count == 2
    closed = lc.close_all(STOPPED, BASE + 100.0)
    assert [(e.incident_id, e.seq, e.event, e.reason) for e in closed] == \
        [(e.incident_id, 2, "closed", STOPPED) for e in opened]
    assert lc.open_count == 0 and lc.close_all(STOPPED, BASE + 101.0) == []
    assert closed[0].event_at == BASE + 100.0 and closed[0].stream_pts == 2.0


def test_a_left_open_incident_confirmed_at_its_place_continues_not_a_second_one() -> None:
    lc = lifecycle()
    assert lc.resume([left()]) == []
    events = run(lc, {t: [finding((0.51, 0.5))] for t in range(8, 15)}, 14)
    assert [(e.incident_id, e.seq, e.event) for e in events] == [("inc-left-0001", 4, "updated")]
    assert events[0].started_at == BASE - 500.0, "the incident's own start is kept"
    assert lc.open_count == 1 and lc.resumable_count == 0
    (closed,) = run(lc, {}, 25)[-1:]
    assert (closed.incident_id, closed.seq, closed.event, closed.reason) == ("inc-left-0001", 5, "closed", None)


def test_a_left_open_incident_not_confirmed_in_time_is_closed_as_restarted() -> None:
    lc = lifecycle(resume_within_s=10.0)
    lc.resume([left()])
    events = run(lc, {12.0: [finding()]}, 12)  # the place fires again only after the window
    assert [(e.incident_id, e.seq, e.event, e.reason) for e in events[:1]] == \
        [("inc-left-0001", 4, "closed", RESTARTED)]
    assert events[0].event_at == BASE + 10.0
    assert [e.event for e in events[1:]] == ["opened"] and events[1].incident_id != "inc-left-0001"


def test_elsewhere_and_another_zone_do_not_resume_it() -> None:
    lc = lifecycle(resume_within_s=5.0)
    lc.resume([left()])
    events = run(lc, {2.0: [finding((0.9, 0.5)), finding(zone="z2")]}, 5)
    assert [(e.event, e.reason) for e in events] == [("opened", None), ("opened", None), ("closed", RESTARTED)]
    assert events[2].incident_id == "inc-left-0001"


@pytest.mark.parametrize("bad", [left(zone="gone"), left(zone=None), left(place=None)])
def test_incidents_of_a_zone_no_longer_there_or_without_a_place_are_closed_at_once(bad: LeftOpen) -> None:
    (ev,) = lifecycle().resume([bad])
    assert (ev.event, ev.seq, ev.reason) == ("closed", 4, RESTARTED)


def test_a_stop_before_the_resume_window_ends_closes_it_too() -> None:
    lc = lifecycle()
    lc.resume([left()])
    run(lc, {}, 3)
    (ev,) = lc.close_all(STOPPED, BASE + 4.0)
    assert (ev.incident_id, ev.seq, ev.reason) == ("inc-left-0001", 4, STOPPED)
