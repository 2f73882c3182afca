"""Repository functions on SQLite and PostgreSQL: what the outbox sink, the review page and the
ticket service rely on."""

from __future__ import annotations

import json

import pytest

from storage import repository as repo
from storage.db import Database
from storage.errors import NotFound, StorageError


def test_record_events_commits_incident_event_evidence_and_outbox_together(db: Database,
                                                                          make_incident_event) -> None:
    events = [make_incident_event("inc-aaaa", 1), make_incident_event("inc-aaaa", 2, "updated"),
              make_incident_event("inc-bbbb", 1, type="street_stall", camera_id="cam-2")]
    with db.transaction() as s:
        assert repo.record_events(s, events, "patrol/v1") == 3
    with db.transaction() as s:
        inc = repo.get_incident(s, "inc-aaaa")
        assert (inc.last_seq, inc.state, inc.type, inc.grid_cell) == (2, "open", "illegal_parking", "G-01")
        assert [e.seq for e in repo.incident_events(s, "inc-aaaa")] == [1, 2]
        assert [(e.kind, e.path) for e in repo.evidence_of(s, "inc-aaaa")] == [
            ("snapshot", "evidence/inc-aaaa/snap.jpg")]
        pending = repo.pending_outbox(s)
        assert [(r.topic, r.incident_id, r.seq) for r in pending] == [
            ("patrol/v1/incidents/illegal_parking/cam-1", "inc-aaaa", 1),
            ("patrol/v1/incidents/illegal_parking/cam-1", "inc-aaaa", 2),
            ("patrol/v1/incidents/street_stall/cam-2", "inc-bbbb", 1)]
        assert json.loads(pending[0].payload)["incident_id"] == "inc-aaaa"


def test_the_same_event_twice_is_kept_once(db: Database, make_incident_event) -> None:
    ev = make_incident_event("inc-aaaa", 1)
    for _ in range(2):
        with db.transaction() as s:
            repo.record_events(s, [ev], "patrol/v1")
    with db.transaction() as s:
        assert len(repo.pending_outbox(s)) == 1
        assert len(repo.incident_events(s, "inc-aaaa")) == 1
        assert len(repo.evidence_of(s, "inc-aaaa")) == 1


def test_a_failed_transaction_leaves_nothing(db: Database, make_incident_event) -> None:
    with pytest.raises(RuntimeError), db.transaction() as s:
        repo.record_events(s, [make_incident_event("inc-aaaa", 1)], "patrol/v1")
        raise RuntimeError("crash before commit")
    with db.transaction() as s:
        assert repo.pending_outbox(s) == []
        with pytest.raises(NotFound):
            repo.get_incident(s, "inc-aaaa")


def test_outbox_marks_sent_and_counts(db: Database, make_incident_event) -> None:
    with db.transaction() as s:
        repo.record_events(s, [make_incident_event("inc-aaaa", i) for i in (1, 2, 3)], "patrol/v1")
    with db.transaction() as s:
        ids = [r.id for r in repo.pending_outbox(s)]
        repo.mark_sent(s, ids[:2])
        repo.mark_failed(s, ids[2:], "no PUBACK")
    with db.transaction() as s:
        assert repo.outbox_counts(s) == {"sent": 2, "pending": 1}
        (left,) = repo.pending_outbox(s)
        assert (left.seq, left.attempts, left.last_error) == (3, 1, "no PUBACK")


def test_closed_event_closes_and_camera_offline_records_health(db: Database, make_incident_event) -> None:
    off = dict(type="camera_offline", camera_id="cam-9", zone_id=None, location=None)
    with db.transaction() as s:
        repo.record_events(s, [make_incident_event("off-cam-9", 1, **off),
                               make_incident_event("off-cam-9", 2, "closed", **off)], "patrol/v1")
    with db.transaction() as s:
        inc = repo.get_incident(s, "off-cam-9")
        assert (inc.state, inc.closed_at) == ("closed", 1_700_000_002.0)
        health = repo.camera_health(s)
        assert health["cam-9"].state == "online"


def test_verdicts_operators_and_dead_letters(db: Database, make_incident_event) -> None:
    with db.transaction() as s:
        repo.record_events(s, [make_incident_event("inc-aaaa", 1)], "patrol/v1")
        repo.create_operator(s, "alice", "$argon2id$fake")
        repo.add_verdict(s, "inc-aaaa", "alice", "reject", "shadow, not a car")
        repo.add_dead_letter(s, "patrol/v1/incidents/x/y", b"\xff" * 70_000, "not JSON")
    with db.transaction() as s:
        assert repo.get_operator(s, "alice").password_hash == "$argon2id$fake"  # type: ignore[union-attr]
        assert repo.get_operator(s, "bob") is None
        (v,) = repo.verdicts_of(s, "inc-aaaa")
        assert (v.operator, v.verdict, v.reason) == ("alice", "reject", "shadow, not a car")
        (d,) = repo.list_dead_letters(s)
        assert (d.size, len(d.payload), d.payload_text, d.reason) == (70_000, 65_536, None, "not JSON")
    with pytest.raises(ValueError, match="confirm"), db.transaction() as s:
        repo.add_verdict(s, "inc-aaaa", "alice", "maybe")
    with pytest.raises(NotFound, match="inc-zzzz"), db.transaction() as s:
        repo.add_verdict(s, "inc-zzzz", "alice", "confirm")
    with pytest.raises(StorageError), db.transaction() as s:  # unique username
        repo.create_operator(s, "alice", "x")


def test_replay_requeues_what_was_sent_since(db: Database, make_incident_event) -> None:
    with db.transaction() as s:
        repo.record_events(s, [make_incident_event("inc-aaaa", i) for i in (1, 2, 3)], "patrol/v1")
        repo.enqueue(s, "patrol/v1/verify/request/cam-1", "{}")  # not an incident event: never replayed
    with db.transaction() as s:
        ids = [r.id for r in repo.pending_outbox(s)]
        repo.mark_sent(s, ids[:1], at=100.0)
        repo.mark_sent(s, ids[1:], at=200.0)
    with db.transaction() as s:
        assert repo.requeue_sent_since(s, 150.0) == 2
    with db.transaction() as s:
        assert [r.seq for r in repo.pending_outbox(s)] == [2, 3]
        assert repo.last_received_at(s) is None
