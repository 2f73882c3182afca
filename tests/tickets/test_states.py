"""The loop's state machine: every allowed transition works, every other is refused and changes nothing."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from camera_config.schema import TicketsConfig
from storage import repository as repo
from storage.db import Database, open_database
from tickets.desk import apply_event, transition
from tickets.states import STATES, TRANSITIONS, TransitionError, check_transition

ALLOWED = {("accepted", "dispatched"), ("accepted", "rejected"), ("dispatched", "disposed"),
           ("dispatched", "rejected"), ("disposed", "verified"), ("disposed", "dispatched"),
           ("verified", "archived"), ("verified", "reopened"), ("rejected", "archived"),
           ("rejected", "reopened"), ("archived", "reopened"), ("reopened", "dispatched"),
           ("reopened", "rejected")}
PAIRS = list(itertools.product(STATES, (*STATES, "closed", "")))


def test_the_table_is_the_documented_loop() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.fixture(scope="module")
def ticket_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    return open_database(f"sqlite:///{Path(tmp_path_factory.mktemp('states')) / 't.db'}")


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b or 'empty'}" for a, b in PAIRS])
def test_transition_pair(ticket_db: Database, make_incident_event, current: str, target: str) -> None:
    ev = make_incident_event(f"inc-{current}-{target or 'empty'}", 1, zone_id=f"z-{current}-{target}")
    assert apply_event(ticket_db, TicketsConfig(), ev, ev.topic()) == "applied"
    with ticket_db.transaction() as s:
        (ticket,) = [t for t in repo.list_tickets(s) if t.incident_id == ev.incident_id]
        ticket.state = current  # put it in the state under test
        tid = ticket.id
    with ticket_db.transaction() as s:
        before = len(repo.ticket_history(s, tid))
        queued = len(repo.pending_outbox(s, 10_000))
    if (current, target) in ALLOWED:
        with ticket_db.transaction() as s:
            transition(s, tid, target, actor="op-7", reason="table test")
        with ticket_db.transaction() as s:
            assert repo.get_ticket(s, tid).state == target
            last = repo.ticket_history(s, tid)[-1]
            assert (last.from_state, last.to_state, last.actor, last.reason) == (current, target, "op-7",
                                                                                 "table test")
            assert len(repo.ticket_history(s, tid)) == before + 1
            assert len(repo.pending_outbox(s, 10_000)) == queued + (target == "disposed")
    else:
        with pytest.raises(TransitionError) as info, ticket_db.transaction() as s:
            transition(s, tid, target, actor="op-7", reason="table test")
        assert f"ticket {tid}: cannot go from {current!r} to {target!r}" in str(info.value)
        with ticket_db.transaction() as s:
            assert repo.get_ticket(s, tid).state == current
            assert len(repo.ticket_history(s, tid)) == before
            assert len(repo.pending_outbox(s, 10_000)) == queued  # no verify request either


def test_check_transition_names_what_is_allowed() -> None:
    with pytest.raises(TransitionError, match=r"allowed from 'accepted': dispatched, rejected"):
        check_transition(5, "accepted", "archived")
