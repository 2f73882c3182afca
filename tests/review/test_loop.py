"""The loop from the review page (issue 15): confirm dispatches the ticket, reject rejects it with the
reason; the department view lists its dispatched tickets and marks one disposed (verify request
queued); the verifier's answer verifies and archives it or sends it back; timings and the report;
a member of one department never sees nor changes another's ticket (acceptance 4)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from review_kit import PASSWORD, incident, login
from sqlalchemy import select

from camera_config.schema import TicketsConfig
from evaluation.export import reviewed_incidents
from review.routes.reports import summarise
from review.server import add_operator
from storage import repository as repo
from storage.db import Database
from storage.models import OutboxRow, Ticket
from tickets.desk import apply_event, apply_verify_result, ticket_view
from tickets.states import loop_timings

CFG = TicketsConfig(routes={"G-01": {"illegal_parking": "traffic"}, "G-02": {"*": "parks"}})
T0 = 1_790_000_000.0


@pytest.fixture
def loop(db: Database) -> dict[str, int]:
    """Two tickets made by the ticket service: #traffic (G-01, cam-a) and #parks (G-02, cam-b);
    a member of each department."""
    ids = {}
    for inc_id, cam, cell in (("inc-t-000010", "cam-a", "G-01"), ("inc-p-000011", "cam-b", "G-02")):
        ev = incident(inc_id, camera=cam, cell=cell, started=T0 + 1_000)
        assert apply_event(db, CFG, ev, f"patrol/v1/incidents/{cam}") == "applied"
        with db.transaction() as s:
            ticket_id = repo.get_incident(s, inc_id).ticket_id
            assert ticket_id is not None
            ids[cell] = ticket_id
    add_operator(db, "tina", PASSWORD, role="department", department="traffic")
    add_operator(db, "pete", PASSWORD, role="department", department="parks")
    return ids


def _state(db: Database, ticket_id: int) -> str:
    with db.transaction() as s:
        return repo.get_ticket(s, ticket_id).state


def _history(db: Database, ticket_id: int) -> list[tuple[str | None, str, str]]:
    with db.transaction() as s:
        return [(h.from_state, h.to_state, h.actor) for h in repo.ticket_history(s, ticket_id)]


def test_confirm_dispatches_and_reject_rejects_with_the_reason(client: TestClient, db: Database,
                                                               loop: dict[str, int]) -> None:
    token = login(client)
    r = client.post("/incidents/inc-t-000010/verdict", data={"verdict": "confirm", "csrf_token": token})
    assert r.status_code == 303
    assert _state(db, loop["G-01"]) == "dispatched"
    assert _history(db, loop["G-01"])[-1] == ("accepted", "dispatched", "alice")
    r = client.post("/incidents/inc-p-000011/verdict",
                    data={"verdict": "reject", "reason": "delivery van unloading", "csrf_token": token})
    assert r.status_code == 303
    assert _state(db, loop["G-02"]) == "rejected"
    with db.transaction() as s:
        last = repo.ticket_history(s, loop["G-02"])[-1]
        assert last.actor == "alice" and "delivery van unloading" in last.reason
    # the rejection is the incident's false-alarm mark that the labels export reads
    reviewed = reviewed_incidents(db.url, "cam-b", T0, T0 + 10_000)
    assert [(r.incident_id, r.verdict, r.reason) for r in reviewed] == [
        ("inc-p-000011", "reject", "delivery van unloading")]


def test_the_category_code_is_carried_in_the_ticket_and_its_json(db: Database, loop: dict[str, int]) -> None:
    with db.transaction() as s:
        view = ticket_view(s, repo.get_ticket(s, loop["G-01"]), full=True)
    assert view["category_code"] == CFG.category_codes["illegal_parking"] == "0510"
    assert view["timings"]["accepted"] is not None and view["timings"]["dispatched"] is None


def test_department_member_disposes_then_verifier_verifies_and_archives(client: TestClient, db: Database,
                                                                        loop: dict[str, int]) -> None:
    token = login(client)
    client.post("/incidents/inc-t-000010/verdict", data={"verdict": "confirm", "csrf_token": token})
    client.post("/logout", data={"csrf_token": token})
    token = login(client, "tina")
    page = client.get("/department")
    assert page.status_code == 200
    assert f'data-ticket="{loop["G-01"]}"' in page.text and f'data-ticket="{loop["G-02"]}"' not in page.text
    refused = client.post(f"/tickets/{loop['G-01']}/dispose", data={"note": "  ", "csrf_token": token})
    assert refused.status_code == 422 and _state(db, loop["G-01"]) == "dispatched"
    r = client.post(f"/tickets/{loop['G-01']}/dispose", data={"note": "car towed", "csrf_token": token})
    assert r.status_code == 303 and _state(db, loop["G-01"]) == "disposed"
    with db.transaction() as s:
        requests = [json.loads(o.payload) for o in s.scalars(select(OutboxRow)) if "/verify/request/" in o.topic]
        request_id = repo.get_ticket(s, loop["G-01"]).verify_request_id
    assert [q["ticket_id"] for q in requests] == [loop["G-01"]] and requests[0]["request_id"] == request_id
    assert requests[0]["category_code"] == "0510"  # the message carries the city platform's code
    # first answer: the car is still there -> back to dispatched with the evidence
    assert apply_verify_result(db, {"request_id": request_id, "ticket_id": loop["G-01"], "camera_id": "cam-a",
                                    "present": True, "frames": 4, "frames_present": 4}, archive=True) == "dispatched"
    assert f'data-ticket="{loop["G-01"]}"' in client.get("/department").text.split('id="recent"')[0]
    client.post(f"/tickets/{loop['G-01']}/dispose", data={"note": "towed, really", "csrf_token": token})
    with db.transaction() as s:
        request_id = repo.get_ticket(s, loop["G-01"]).verify_request_id
    assert apply_verify_result(db, {"request_id": request_id, "ticket_id": loop["G-01"], "camera_id": "cam-a",
                                    "present": False, "frames": 4, "frames_present": 0}, archive=True) == "archived"
    states = [to for _f, to, _a in _history(db, loop["G-01"])]
    assert states == ["accepted", "dispatched", "disposed", "dispatched", "disposed", "verified", "archived"]
    ticket = client.get(f"/tickets/{loop['G-01']}")
    assert ticket.status_code == 200 and 'data-state="archived"' in ticket.text
    for step in ("accepted", "dispatched", "disposed", "verified", "archived"):
        row = ticket.text.split(f'data-step="{step}"')[1].split("</tr>")[0]
        assert "–" not in row, step  # every step has its time
    assert 'id="category-code">0510<' in ticket.text


def test_a_member_cannot_see_or_change_another_departments_ticket(client: TestClient, db: Database,
                                                                   loop: dict[str, int]) -> None:
    token = login(client)
    for inc in ("inc-t-000010", "inc-p-000011"):
        client.post(f"/incidents/{inc}/verdict", data={"verdict": "confirm", "csrf_token": token})
    client.post("/logout", data={"csrf_token": token})
    token = login(client, "pete")  # parks
    listing = client.get("/department")
    assert f'data-ticket="{loop["G-02"]}"' in listing.text
    assert f'data-ticket="{loop["G-01"]}"' not in listing.text
    assert client.get("/department?department=traffic").text.count(f'data-ticket="{loop["G-01"]}"') == 0
    assert client.get(f"/tickets/{loop['G-01']}").status_code == 404
    assert client.get(f"/tickets/{loop['G-02']}").status_code == 200
    assert client.get(f"/api/tickets/{loop['G-01']}").status_code == 404
    api = client.get(f"/api/tickets/{loop['G-02']}")
    assert api.status_code == 200 and api.json()["category_code"] == "0510" and api.json()["department"] == "parks"
    r = client.post(f"/tickets/{loop['G-01']}/dispose", data={"note": "not ours", "csrf_token": token})
    assert r.status_code == 404 and _state(db, loop["G-01"]) == "dispatched"
    report = client.get("/report")  # the last 7 days: the tickets were accepted just now
    assert 'data-department="parks"' in report.text and 'data-department="traffic"' not in report.text
    # an operator is no department member
    client.post("/logout", data={"csrf_token": token})
    login(client)
    assert client.get("/department").status_code == 403
    assert client.get(f"/tickets/{loop['G-02']}").status_code == 403


def test_report_sums_timings_per_department_and_cell() -> None:
    t = Ticket(department="traffic", grid_cell="G-01")
    done = loop_timings([(0.0, "accepted"), (60.0, "dispatched"), (660.0, "disposed"), (700.0, "verified")],
                        due_at=600.0, state="verified", now=1_000.0)
    quick = loop_timings([(0.0, "accepted"), (120.0, "dispatched")], due_at=5_000.0, state="dispatched", now=1_000.0)
    late = loop_timings([(0.0, "accepted")], due_at=500.0, state="accepted", now=1_000.0)
    rows = summarise([(t, done), (t, quick), (t, late)])
    assert len(rows) == 1
    row = rows[0]
    assert (row.count, row.overdue) == (3, 2)  # disposed after its deadline; still accepted past it
    assert row.dispatch == (90.0, 90.0) and row.dispose == (600.0, 600.0) and row.verify == (40.0, 40.0)
