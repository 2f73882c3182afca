"""Category codes (tickets.category_codes) carried by the ticket; the loop's timings from its history."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from camera_config.schema import TicketsConfig
from storage import repository as repo
from storage.db import Database
from tickets.desk import apply_event, ticket_view, transition
from tickets.states import loop_timings


def test_category_code_comes_from_the_config_and_is_in_the_ticket_json(db: Database, make_incident_event: Any) -> None:
    cfg = TicketsConfig(category_codes={"illegal_parking": "110101-0510"})
    apply_event(db, cfg, make_incident_event("inc-park1", type="illegal_parking"), "t")
    apply_event(db, cfg, make_incident_event("inc-stall1", type="street_stall", camera_id="cam-9"), "t")
    with db.transaction() as s:
        views = {v["incident_id"]: v for v in (ticket_view(s, t) for t in repo.list_tickets(s))}
    assert views["inc-park1"]["category_code"] == "110101-0510"
    assert views["inc-stall1"]["category_code"] is None  # a type the city gave no code carries none
    assert TicketsConfig().category_codes["street_stall"] == "0502"  # placeholder default


@pytest.mark.parametrize("codes, where", [({"jaywalking": "1"}, "jaywalking"),
                                         ({"illegal_parking": ""}, "illegal_parking")])
def test_bad_category_codes_are_refused_naming_the_entry(codes: dict[str, str], where: str) -> None:
    with pytest.raises(ValidationError, match=where):
        TicketsConfig(category_codes=codes)


def test_timings_follow_the_history(db: Database, make_incident_event: Any) -> None:
    cfg = TicketsConfig()
    apply_event(db, cfg, make_incident_event("inc-time1"), "t")
    with db.transaction() as s:
        ticket_id = repo.list_tickets(s)[0].id
        transition(s, ticket_id, "dispatched", actor="op", reason="confirmed")
    with db.transaction() as s:
        t = ticket_view(s, repo.get_ticket(s, ticket_id), now=0.0)["timings"]
    assert t["accepted"] is not None and t["dispatched"] >= t["accepted"] and t["disposed"] is None
    assert t["to_dispatch_s"] is not None and t["to_dispose_s"] is None and t["redispatched"] == 0


def test_redispatch_counts_disposal_from_the_first_dispatch_and_overdue_rules() -> None:
    hist = [(0.0, "accepted"), (10.0, "dispatched"), (100.0, "disposed"), (110.0, "dispatched"),
            (400.0, "disposed"), (420.0, "verified"), (420.0, "archived")]
    t = loop_timings(hist, due_at=300.0, state="archived", now=1_000.0)
    assert (t.to_dispatch_s, t.to_dispose_s, t.to_verify_s, t.redispatched) == (10.0, 390.0, 20.0, 1)
    assert t.overdue  # the last disposal came after the deadline
    assert not loop_timings(hist[:3], due_at=300.0, state="disposed", now=1_000.0).overdue  # disposed in time
    assert loop_timings(hist[:2], due_at=300.0, state="dispatched", now=1_000.0).overdue  # still open, late
    assert not loop_timings(hist[:2], due_at=300.0, state="dispatched", now=200.0).overdue


@pytest.mark.parametrize("archive, final", [(True, "archived"), (False, "verified")])
def test_the_ticket_service_archives_a_verified_ticket_when_configured(db: Database, make_incident_event: Any,
                                                                      archive: bool, final: str) -> None:
    from alerts.memory import InMemoryBroker
    from camera_config.schema import MqttConfig
    from tickets.service import TicketService

    broker = InMemoryBroker()
    service = TicketService(db, MqttConfig(), TicketsConfig(archive_verified=archive), client_id="loop-tickets",
                            transports=broker.transport)
    apply_event(db, service.cfg, make_incident_event("inc-arch1"), "t")
    with db.transaction() as s:
        ticket = repo.list_tickets(s)[0]
        transition(s, ticket.id, "dispatched", actor="op", reason="confirmed")
        transition(s, ticket.id, "disposed", actor="dept", reason="towed")
        request_id, ticket_id = ticket.verify_request_id, ticket.id
    result = {"request_id": request_id, "ticket_id": ticket_id, "camera_id": "cam-1", "present": False,
              "frames": 8, "frames_present": 0}
    assert service._verify_result("patrol/v1/verify/result/cam-1", json.dumps(result).encode()) == final
    with db.transaction() as s:
        assert repo.get_ticket(s, ticket_id).state == final
