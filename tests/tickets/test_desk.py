"""The ticket desk: exactly once, in order per incident, routing, merging, deadlines, verification."""

from __future__ import annotations

import json
import time

import pytest

from camera_config.schema import TicketsConfig
from storage import repository as repo
from storage.db import Database
from tickets.desk import VerifyIgnored, apply_event, apply_verify_result, transition
from tickets.routing import route
from tickets.states import OPEN_STATES

CFG = TicketsConfig(
    routes={"G-01": {"illegal_parking": "traffic_police", "*": "urban_management"},
            "*": {"fallen_branch": "greening", "camera_offline": "video_maintenance"}},
    default_department="command_centre", merge_window_s=600, merge_distance=0.1,
    deadlines_s={"illegal_parking": 1_800.0})


@pytest.mark.parametrize(("cell", "type_", "department"), [
    ("G-01", "illegal_parking", "traffic_police"),
    ("G-01", "street_stall", "urban_management"),
    ("G-01", "fallen_branch", "urban_management"),  # the cell's '*' beats the global type rule
    ("G-02", "fallen_branch", "greening"),
    ("G-02", "camera_offline", "video_maintenance"),
    ("G-02", "street_stall", "command_centre"),
])
def test_routing_grid_cell_by_type(cell: str, type_: str, department: str) -> None:
    assert route(CFG, cell, type_) == department


def test_every_event_applied_once_and_redelivery_changes_nothing(db: Database, make_incident_event) -> None:
    events = [make_incident_event("inc-aaaa", 1), make_incident_event("inc-aaaa", 2, "updated"),
              make_incident_event("inc-aaaa", 3, "closed")]
    assert [apply_event(db, CFG, e, e.topic()) for e in events] == ["applied"] * 3
    assert [apply_event(db, CFG, e, e.topic()) for e in events] == ["duplicate"] * 3
    with db.transaction() as s:
        (ticket,) = repo.list_tickets(s)
        assert (ticket.state, ticket.department, ticket.incident_count) == ("accepted", "traffic_police", 1)
        assert ticket.due_at == 1_700_000_000.0 + 1_800
        assert len(repo.ticket_history(s, ticket.id)) == 1
        assert [r.seq for r in repo.inbox_rows(s)] == [1, 2, 3]
        assert repo.get_incident(s, "inc-aaaa").state == "closed"


def test_an_early_event_waits_for_the_missing_one(db: Database, make_incident_event) -> None:
    e1, e2, e3 = (make_incident_event("inc-aaaa", i, "opened" if i == 1 else "updated") for i in (1, 2, 3))
    assert apply_event(db, CFG, e3, e3.topic()) == "held"
    assert apply_event(db, CFG, e2, e2.topic()) == "held"
    with db.transaction() as s:
        assert repo.list_tickets(s) == []
        assert repo.applied_seq(s, "inc-aaaa") == 0
        held_since = repo.oldest_held_at(s, time.time() + 1)  # what makes the service ask for a replay
        assert held_since is not None and held_since <= time.time()
        assert repo.oldest_held_at(s, held_since) is None      # not yet waiting long enough
    assert apply_event(db, CFG, e1, e1.topic()) == "applied"
    with db.transaction() as s:
        rows = repo.inbox_rows(s)
        assert [r.seq for r in sorted(rows, key=lambda r: r.apply_order or 0)] == [1, 2, 3]
        assert repo.get_incident(s, "inc-aaaa").last_seq == 3
        assert len(repo.list_tickets(s)) == 1


@pytest.mark.parametrize(("second", "joins"), [
    ({}, True),                                                   # same place, inside the window
    ({"location": (0.55, 0.82)}, True),                           # a little further along the kerb
    ({"location": (0.9, 0.2)}, False),                            # same zone, other end of the view
    ({"zone_id": "crossing"}, False),                             # another zone
    ({"type": "street_stall"}, False),                            # another problem
    ({"camera_id": "cam-2"}, False),                              # another camera
    ({"started_at": 1_700_000_000.0 + 900, "event_at": 1_700_000_000.0 + 900}, False),  # after the window
])
def test_merge_same_place_within_window(db: Database, make_incident_event, second: dict, joins: bool) -> None:
    first = make_incident_event("inc-aaaa", 1)
    other = make_incident_event("inc-bbbb", 1, **second)
    apply_event(db, CFG, first, first.topic())
    apply_event(db, CFG, other, other.topic())
    with db.transaction() as s:
        tickets = repo.list_tickets(s)
        assert len(tickets) == (1 if joins else 2)
        a, b = repo.get_incident(s, "inc-aaaa"), repo.get_incident(s, "inc-bbbb")
        assert (a.ticket_id == b.ticket_id) is joins
        if joins:
            assert tickets[0].incident_count == 2
            assert "inc-bbbb" in repo.ticket_history(s, tickets[0].id)[-1].reason


def test_a_closed_ticket_is_not_joined(db: Database, make_incident_event) -> None:
    first = make_incident_event("inc-aaaa", 1)
    apply_event(db, CFG, first, first.topic())
    with db.transaction() as s:
        tid = repo.list_tickets(s)[0].id
        transition(s, tid, "rejected", actor="op", reason="false alarm")
    again = make_incident_event("inc-bbbb", 1)
    apply_event(db, CFG, again, again.topic())
    with db.transaction() as s:
        assert len(repo.list_tickets(s)) == 2


def test_overdue_lists_open_tickets_past_their_deadline(db: Database, make_incident_event) -> None:
    late = make_incident_event("inc-aaaa", 1)                                     # due +1800 s
    fresh = make_incident_event("inc-bbbb", 1, zone_id="other", started_at=1_700_010_000.0)
    done = make_incident_event("inc-cccc", 1, zone_id="third")
    for e in (late, fresh, done):
        apply_event(db, CFG, e, e.topic())
    with db.transaction() as s:
        done_id = repo.get_incident(s, "inc-cccc").ticket_id
        assert done_id is not None
        transition(s, done_id, "rejected", actor="op", reason="false alarm")
    with db.transaction() as s:
        overdue = repo.overdue_tickets(s, 1_700_005_000.0, OPEN_STATES)
        assert [t.incident_id for t in overdue] == ["inc-aaaa"]


def _disposed_ticket(db: Database, make_incident_event) -> tuple[int, dict]:
    ev = make_incident_event("inc-aaaa", 1)
    apply_event(db, CFG, ev, ev.topic())
    with db.transaction() as s:
        tid = repo.list_tickets(s)[0].id
        transition(s, tid, "dispatched", actor="op", reason="to traffic police")
        transition(s, tid, "disposed", actor="tp-12", reason="car towed")
    with db.transaction() as s:
        (req,) = repo.pending_outbox(s)
    assert req.topic == "patrol/v1/verify/request/cam-1"
    return tid, json.loads(req.payload)


@pytest.mark.parametrize(("present", "state"), [(False, "verified"), (True, "dispatched")])
def test_verification_result_closes_or_reopens_the_disposal(db: Database, make_incident_event, present: bool,
                                                            state: str) -> None:
    tid, request = _disposed_ticket(db, make_incident_event)
    assert (request["ticket_id"], request["camera_id"], request["zone_id"]) == (tid, "cam-1", "kerb")
    result = {"request_id": request["request_id"], "ticket_id": tid, "present": present, "frames": 8,
              "frames_present": 8 if present else 0, "boxes": [{"label": "car"}] if present else []}
    assert apply_verify_result(db, result) == state
    with pytest.raises(VerifyIgnored, match=f"ticket {tid} is '{state}', not awaiting verification"):
        apply_verify_result(db, result)  # redelivered result: no second transition
    with db.transaction() as s:
        history = repo.ticket_history(s, tid)
        assert (history[-1].from_state, history[-1].to_state, history[-1].actor) == ("disposed", state, "verifier")
        assert json.loads(history[-1].evidence or "{}")["frames_present"] == result["frames_present"]
        assert [h.to_state for h in history].count(state) == (2 if state == "dispatched" else 1)


def test_a_stale_verification_result_is_ignored(db: Database, make_incident_event) -> None:
    tid, _request = _disposed_ticket(db, make_incident_event)
    stale = {"request_id": "not-the-current-one", "ticket_id": tid, "present": False}
    with pytest.raises(VerifyIgnored, match=f"'not-the-current-one' is not the open verify request of ticket {tid}"):
        apply_verify_result(db, stale)
    with pytest.raises(VerifyIgnored, match="no ticket 999"):
        apply_verify_result(db, {**stale, "ticket_id": 999})
    right = {**stale, "request_id": _request["request_id"]}
    with pytest.raises(VerifyIgnored, match=f"the topic names camera 'cam-9'; ticket {tid} is on 'cam-1'"):
        apply_verify_result(db, right, camera_id="cam-9")   # the right id on another camera's topic
    with pytest.raises(VerifyIgnored, match="the payload names camera 'cam-2'"):
        apply_verify_result(db, {**right, "camera_id": "cam-2"}, camera_id="cam-1")
    with db.transaction() as s:
        assert repo.get_ticket(s, tid).state == "disposed"
    assert apply_verify_result(db, right, camera_id="cam-1") == "verified"


def test_an_unanswered_verification_is_asked_again(db: Database, make_incident_event) -> None:
    from core.topics import Topics
    from tickets.desk import retry_stale_verifications

    tid, first = _disposed_ticket(db, make_incident_event)
    cfg = TicketsConfig(verify_timeout_s=300)
    with db.transaction() as s:
        assert retry_stale_verifications(s, first["requested_at"] + 10, cfg, Topics()) == []
        assert retry_stale_verifications(s, first["requested_at"] + 301, cfg, Topics()) == [tid]
    with db.transaction() as s:
        second = json.loads(repo.pending_outbox(s)[-1].payload)
    assert second["ticket_id"] == tid and second["request_id"] != first["request_id"]
    late = {"request_id": first["request_id"], "ticket_id": tid, "present": False}
    with pytest.raises(VerifyIgnored):
        apply_verify_result(db, late)                            # the old answer is stale now
    assert apply_verify_result(db, {**late, "request_id": second["request_id"]}) == "verified"
