"""Retention against the real database: evidence of open tickets (and open incidents) survives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evidence.keep import open_ticket_keep
from evidence.retention import RetentionPolicy, apply_retention
from evidence.store import EvidenceStore
from storage import repository as repo
from storage.db import Database
from tickets.states import OPEN_STATES

NOW = 1_800_000_000.0
DAY = 86_400.0


def test_retention_keeps_open_tickets_and_deletes_the_oldest_closed_first(db: Database, tmp_path: Path,
                                                                         make_incident_event) -> None:
    # (id, age in days, incident closed?, ticket state or None, merged into the ticket of)
    rows = [
        ("inc-open-ticket", 90, True, "dispatched", None),
        ("inc-archived-tk", 80, True, "archived", None),
        ("inc-no-ticket-a", 70, True, None, None),
        ("inc-still-open1", 60, False, None, None),
        ("inc-merged-open", 50, True, None, "inc-open-ticket"),
        ("inc-rejected-tk", 40, True, "rejected", None),
        ("inc-recent-done", 1, True, "verified", None),
    ]
    store = EvidenceStore(tmp_path / "evidence")
    with db.transaction() as s:
        tickets = {}
        for incident_id, age, closed, ticket_state, _ in rows:
            opened = NOW - age * DAY
            events = [make_incident_event(incident_id, 1, "opened", started_at=opened, event_at=opened)]
            if closed:
                events.append(make_incident_event(incident_id, 2, "closed", started_at=opened,
                                                  event_at=opened + 60))
            for ev in events:
                repo.apply_incident_event(s, ev)
            if ticket_state:
                t = repo.add_ticket(s, events[0], "traffic_police", NOW, ticket_state, actor="test",
                                    reason="test", at=opened)
                tickets[incident_id] = t.id
                repo.get_incident(s, incident_id).ticket_id = t.id
        for incident_id, *_, merged_into in rows:
            if merged_into:
                repo.get_incident(s, incident_id).ticket_id = tickets[merged_into]
    for incident_id, age, *_ in rows:
        folder = store.incident_dir(incident_id)
        folder.mkdir(parents=True)
        (folder / "clip.mp4").write_bytes(b"\0" * 400_000)
        (folder / "manifest.json").write_text(json.dumps({"times": {"opened_at": NOW - age * DAY}}))

    # 30 days: everything older goes, oldest first, unless its ticket (or the incident) is open
    plan = apply_retention(store, RetentionPolicy(max_age_days=30, max_total_mb=2.0), NOW,
                           open_ticket_keep(db, OPEN_STATES))

    assert [e.incident_id for e in plan.delete] == ["inc-archived-tk", "inc-no-ticket-a", "inc-rejected-tk"]
    assert set(plan.kept_open) == {"inc-open-ticket", "inc-still-open1", "inc-merged-open"}
    left = sorted(p.name for p in store.root.iterdir())
    assert left == ["inc-merged-open", "inc-open-ticket", "inc-recent-done", "inc-still-open1"]

    # by size: 1.6 MB left, limit 1 MB: the only closed one left goes, open ones stay even above the limit
    plan = apply_retention(store, RetentionPolicy(max_age_days=30, max_total_mb=1.0), NOW,
                           open_ticket_keep(db, OPEN_STATES))
    assert [e.incident_id for e in plan.delete] == ["inc-recent-done"]
    assert sorted(p.name for p in store.root.iterdir()) == ["inc-merged-open", "inc-open-ticket", "inc-still-open1"]
    assert plan.total_bytes_after > 1024 * 1024


def test_keep_check_refuses_an_empty_set_of_open_states(db: Database) -> None:
    """The caller names the open ticket states; none at all would let retention delete open tickets' evidence."""
    with pytest.raises(ValueError, match="open_ticket_states is empty"):
        open_ticket_keep(db, ())
