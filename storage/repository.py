"""The functions the rest of the code calls instead of writing queries.

Every function takes a :class:`~sqlalchemy.orm.Session` already inside a transaction
(``with db.transaction() as s:``) so a caller can make several changes atomically — the
outbox sink commits the incident, its event and the outbox row together; the ticket service
commits the dedupe row, the ticket and its history together.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.events import IncidentEvent
from storage.errors import NotFound
from storage.models import (
    Base,
    CameraHealth,
    DeadLetter,
    EvidenceRef,
    InboxRow,
    Incident,
    IncidentEventRow,
    LoginThrottle,
    Operator,
    OutboxRow,
    ReviewSession,
    Ticket,
    TicketHistory,
    Verdict,
)

DEAD_LETTER_KEEP_BYTES = 65_536


def _insert_ignore(s: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted."""
    dialect = s.get_bind().dialect.name
    table: Any = model.__table__
    ins: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    first_pk = next(iter(table.primary_key.columns))
    # RETURNING, not rowcount: psycopg reports -1 for a single-row INSERT ... ON CONFLICT
    return s.execute(ins.values(**values).on_conflict_do_nothing().returning(first_pk)).first() is not None


# ---------------------------------------------------------------- incidents

def _incident_values(ev: IncidentEvent) -> dict[str, Any]:
    loc = ev.location
    return {
        "type": ev.type, "camera_id": ev.camera_id, "grid_cell": ev.grid_cell, "zone_id": ev.zone_id,
        "location_x": loc[0] if loc else None, "location_y": loc[1] if loc else None,
        "severity": ev.severity, "started_at": ev.started_at,
    }


def ensure_incident(s: Session, ev: IncidentEvent) -> Incident:
    """The incident row of ``ev``, created if new, locked for this transaction (FOR UPDATE)."""
    _insert_ignore(s, Incident, {"id": ev.incident_id, **_incident_values(ev), "state": "open",
                                 "last_event_at": ev.event_at, "last_seq": 0})
    row = s.scalars(select(Incident).where(Incident.id == ev.incident_id).with_for_update()).one()
    return row


def apply_incident_event(s: Session, ev: IncidentEvent) -> Incident:
    """Record ``ev`` once in ``incident_events`` and fold it into the incident row."""
    inc = ensure_incident(s, ev)
    _insert_ignore(s, IncidentEventRow, {"incident_id": ev.incident_id, "seq": ev.seq, "event": ev.event,
                                         "event_at": ev.event_at, "payload": ev.to_json()})
    if ev.seq >= inc.last_seq:
        for key, value in _incident_values(ev).items():
            setattr(inc, key, value)
        inc.last_seq = ev.seq
        inc.last_event_at = ev.event_at
        if ev.event == "closed":
            inc.state, inc.closed_at = "closed", ev.event_at
        else:
            inc.state, inc.closed_at = "open", None
    for kind, path in ev.evidence.links.items():
        add_evidence(s, ev.incident_id, kind, path, None, at=ev.event_at)
    if ev.type == "camera_offline" and ev.event in ("opened", "closed"):
        record_camera_health(s, ev.camera_id, "offline" if ev.event == "opened" else "online", ev.event_at,
                             f"incident {ev.incident_id}")
    return inc


def get_incident(s: Session, incident_id: str) -> Incident:
    inc = s.get(Incident, incident_id)
    if inc is None:
        raise NotFound(f"no incident {incident_id!r}")
    return inc


def list_incidents(s: Session, *, camera_id: str | None = None, state: str | None = None,
                   limit: int = 100) -> Sequence[Incident]:
    q = select(Incident).order_by(Incident.last_event_at.desc()).limit(limit)
    if camera_id:
        q = q.where(Incident.camera_id == camera_id)
    if state:
        q = q.where(Incident.state == state)
    return s.scalars(q).all()


def incident_events(s: Session, incident_id: str) -> Sequence[IncidentEventRow]:
    return s.scalars(select(IncidentEventRow).where(IncidentEventRow.incident_id == incident_id)
                     .order_by(IncidentEventRow.seq)).all()


def incidents_of_ticket(s: Session, ticket_id: int) -> Sequence[Incident]:
    return s.scalars(select(Incident).where(Incident.ticket_id == ticket_id).order_by(Incident.started_at)).all()


# ---------------------------------------------------------------- evidence, health, verdicts, operators

def add_evidence(s: Session, incident_id: str, kind: str, path: str, sha256: str | None,
                 *, at: float | None = None) -> None:
    """Reference one evidence file; the same (incident, kind, path) twice is kept once."""
    _insert_ignore(s, EvidenceRef, {"incident_id": incident_id, "kind": kind, "path": path, "sha256": sha256,
                                    "created_at": time.time() if at is None else at})
    if sha256 is not None:
        s.execute(update(EvidenceRef).where(EvidenceRef.incident_id == incident_id, EvidenceRef.kind == kind,
                                            EvidenceRef.path == path).values(sha256=sha256))


def evidence_of(s: Session, incident_id: str) -> Sequence[EvidenceRef]:
    return s.scalars(select(EvidenceRef).where(EvidenceRef.incident_id == incident_id)
                     .order_by(EvidenceRef.id)).all()


def record_camera_health(s: Session, camera_id: str, state: str, at: float, detail: str | None = None) -> None:
    s.add(CameraHealth(camera_id=camera_id, state=state, at=at, detail=detail))


def camera_health(s: Session) -> dict[str, CameraHealth]:
    """Latest health row per camera."""
    latest = (select(CameraHealth.camera_id, func.max(CameraHealth.id).label("mid"))
              .group_by(CameraHealth.camera_id).subquery())
    rows = s.scalars(select(CameraHealth).join(latest, CameraHealth.id == latest.c.mid)).all()
    return {r.camera_id: r for r in rows}


def add_verdict(s: Session, incident_id: str, operator: str, verdict: str, reason: str = "",
                *, at: float | None = None) -> Verdict:
    if verdict not in ("confirm", "reject"):
        raise ValueError(f"verdict must be 'confirm' or 'reject', got {verdict!r}")
    get_incident(s, incident_id)
    row = Verdict(incident_id=incident_id, operator=operator, verdict=verdict, reason=reason,
                  at=time.time() if at is None else at)
    s.add(row)
    s.flush()
    return row


def verdicts_of(s: Session, incident_id: str) -> Sequence[Verdict]:
    return s.scalars(select(Verdict).where(Verdict.incident_id == incident_id).order_by(Verdict.id)).all()


def create_operator(s: Session, username: str, password_hash: str, *, role: str = "operator",
                    department: str | None = None) -> Operator:
    row = Operator(username=username, password_hash=password_hash, created_at=time.time(), role=role,
                   department=department)
    s.add(row)
    s.flush()
    return row


def get_operator(s: Session, username: str) -> Operator | None:
    return s.scalars(select(Operator).where(Operator.username == username)).one_or_none()


# ---------------------------------------------------------------- dead letters

def add_dead_letter(s: Session, topic: str, payload: bytes, reason: str) -> DeadLetter:
    text: str | None
    try:
        text = payload[:DEAD_LETTER_KEEP_BYTES].decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" in text:  # PostgreSQL text cannot hold NUL; the bytes keep it
        text = None
    row = DeadLetter(topic=topic[:512], payload=payload[:DEAD_LETTER_KEEP_BYTES], payload_text=text,
                     size=len(payload), reason=reason, at=time.time())
    s.add(row)
    s.flush()
    return row


def list_dead_letters(s: Session, limit: int = 100) -> Sequence[DeadLetter]:
    return s.scalars(select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)).all()


# ---------------------------------------------------------------- outbox (publisher side)

def enqueue(s: Session, topic: str, payload: str, *, incident_id: str | None = None, seq: int | None = None,
            retain: bool = False) -> bool:
    """Add a message to the outbox; an incident event already there (same id and seq) is kept once."""
    return _insert_ignore(s, OutboxRow, {"topic": topic, "payload": payload, "incident_id": incident_id,
                                         "seq": seq, "retain": retain, "state": "pending", "attempts": 0,
                                         "created_at": time.time()})


def record_events(s: Session, events: Iterable[IncidentEvent], topic_prefix: str) -> int:
    """The outbox sink's one transaction: incidents, their events and the outbox rows."""
    n = 0
    for ev in events:
        apply_incident_event(s, ev)
        n += enqueue(s, ev.topic(topic_prefix), ev.to_json(), incident_id=ev.incident_id, seq=ev.seq)
    return n


def pending_outbox(s: Session, limit: int = 100) -> Sequence[OutboxRow]:
    """Oldest unsent messages first — the order they were committed."""
    return s.scalars(select(OutboxRow).where(OutboxRow.state == "pending").order_by(OutboxRow.id)
                     .limit(limit)).all()


def mark_sent(s: Session, ids: Sequence[int], at: float | None = None) -> None:
    if ids:
        s.execute(update(OutboxRow).where(OutboxRow.id.in_(ids))
                  .values(state="sent", sent_at=time.time() if at is None else at,
                          attempts=OutboxRow.attempts + 1))


def mark_failed(s: Session, ids: Sequence[int], error: str) -> None:
    if ids:
        s.execute(update(OutboxRow).where(OutboxRow.id.in_(ids))
                  .values(attempts=OutboxRow.attempts + 1, last_error=error[:500]))


def requeue_sent_since(s: Session, since: float) -> int:
    """Mark incident events sent at or after ``since`` pending again (a consumer asked for a replay)."""
    result: Any = s.execute(update(OutboxRow).where(OutboxRow.state == "sent", OutboxRow.sent_at >= since,
                                                    OutboxRow.incident_id.is_not(None))
                            .values(state="pending").returning(OutboxRow.id))
    return len(result.all())


def oldest_held_at(s: Session, received_before: float) -> float | None:
    """Receive time of the oldest event still waiting for an earlier one (a gap), if any."""
    got = s.scalar(select(func.min(InboxRow.received_at)).where(InboxRow.applied_at.is_(None),
                                                                InboxRow.received_at < received_before))
    return None if got is None else float(got)


def last_received_at(s: Session) -> float | None:
    got = s.scalar(select(func.max(InboxRow.received_at)))
    return None if got is None else float(got)


def outbox_counts(s: Session) -> dict[str, int]:
    rows = s.execute(select(OutboxRow.state, func.count()).group_by(OutboxRow.state)).all()
    return {state: int(n) for state, n in rows}


# ---------------------------------------------------------------- inbox (consumer side)

def receive(s: Session, ev: IncidentEvent, topic: str) -> bool:
    """Remember a received event once; False when (incident_id, seq) was already received.

    Call with the incident locked (:func:`ensure_incident`) so two consumers cannot race.
    """
    return _insert_ignore(s, InboxRow, {"incident_id": ev.incident_id, "seq": ev.seq, "topic": topic,
                                        "payload": ev.to_json(), "received_at": time.time()})


def applied_seq(s: Session, incident_id: str) -> int:
    got = s.scalar(select(func.max(InboxRow.seq)).where(InboxRow.incident_id == incident_id,
                                                        InboxRow.applied_at.is_not(None)))
    return int(got or 0)


def received_unapplied(s: Session, incident_id: str, seq: int) -> InboxRow | None:
    return s.scalars(select(InboxRow).where(InboxRow.incident_id == incident_id, InboxRow.seq == seq,
                                            InboxRow.applied_at.is_(None))).one_or_none()


def mark_applied(s: Session, row: InboxRow) -> None:
    order = s.scalar(select(func.max(InboxRow.apply_order)))
    row.applied_at = time.time()
    row.apply_order = int(order or 0) + 1


def inbox_rows(s: Session) -> Sequence[InboxRow]:
    return s.scalars(select(InboxRow).order_by(InboxRow.incident_id, InboxRow.seq)).all()


# ---------------------------------------------------------------- tickets

def add_ticket(s: Session, ev: IncidentEvent, department: str, due_at: float, state: str, *,
               actor: str, reason: str, at: float) -> Ticket:
    loc = ev.location
    t = Ticket(incident_id=ev.incident_id, type=ev.type, camera_id=ev.camera_id, grid_cell=ev.grid_cell,
               zone_id=ev.zone_id, location_x=loc[0] if loc else None, location_y=loc[1] if loc else None,
               department=department, state=state, created_at=at, updated_at=at, due_at=due_at,
               last_incident_at=ev.event_at, incident_count=1)
    s.add(t)
    s.flush()
    add_history(s, t.id, None, state, actor=actor, reason=reason, at=at)
    return t


def get_ticket(s: Session, ticket_id: int, *, lock: bool = False) -> Ticket:
    q = select(Ticket).where(Ticket.id == ticket_id)
    if lock:
        q = q.with_for_update()
    t = s.scalars(q).one_or_none()
    if t is None:
        raise NotFound(f"no ticket {ticket_id}")
    return t


def list_tickets(s: Session, *, states: Sequence[str] | None = None, camera_id: str | None = None,
                 limit: int = 100) -> Sequence[Ticket]:
    q = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
    if states:
        q = q.where(Ticket.state.in_(states))
    if camera_id:
        q = q.where(Ticket.camera_id == camera_id)
    return s.scalars(q).all()


def candidate_tickets(s: Session, *, type: str, camera_id: str, zone_id: str | None, states: Sequence[str],
                      since: float) -> Sequence[Ticket]:
    """Open tickets of this type at this camera and zone whose last incident is after ``since``."""
    q = select(Ticket).where(Ticket.type == type, Ticket.camera_id == camera_id, Ticket.state.in_(states),
                             Ticket.last_incident_at >= since).order_by(Ticket.id).with_for_update()
    q = q.where(Ticket.zone_id.is_(None)) if zone_id is None else q.where(Ticket.zone_id == zone_id)
    return s.scalars(q).all()


def add_history(s: Session, ticket_id: int, from_state: str | None, to_state: str, *, actor: str,
                reason: str, at: float, evidence: dict[str, Any] | None = None) -> TicketHistory:
    row = TicketHistory(ticket_id=ticket_id, at=at, actor=actor, from_state=from_state, to_state=to_state,
                        reason=reason, evidence=json.dumps(evidence, sort_keys=True) if evidence else None)
    s.add(row)
    return row


def ticket_history(s: Session, ticket_id: int) -> Sequence[TicketHistory]:
    return s.scalars(select(TicketHistory).where(TicketHistory.ticket_id == ticket_id)
                     .order_by(TicketHistory.id)).all()


def overdue_tickets(s: Session, now: float, open_states: Sequence[str]) -> Sequence[Ticket]:
    return s.scalars(select(Ticket).where(Ticket.state.in_(open_states), Ticket.due_at < now)
                     .order_by(Ticket.due_at)).all()


# ---------------------------------------------------------------- review accounts, sessions, login throttle
# (camera engineer; tables of migration 0004)

def list_operators(s: Session) -> Sequence[Operator]:
    return s.scalars(select(Operator).order_by(Operator.username)).all()


def revoke_operator_sessions(s: Session, operator_id: int, at: float, why: str) -> int:
    """Revoke every live session of one operator; returns how many."""
    result = s.execute(update(ReviewSession)
                       .where(ReviewSession.operator_id == operator_id, ReviewSession.revoked_at.is_(None))
                       .values(revoked_at=at, revoked_why=why))
    return int(getattr(result, "rowcount", 0) or 0)


def delete_operator(s: Session, username: str, at: float) -> bool:
    """Delete an account and its sessions (verdicts keep the name they were given under)."""
    op = get_operator(s, username)
    if op is None:
        return False
    revoke_operator_sessions(s, op.id, at, "operator deleted")
    s.execute(delete(ReviewSession).where(ReviewSession.operator_id == op.id))
    s.delete(op)
    s.flush()
    return True


def set_operator_disabled(s: Session, username: str, disabled: bool, at: float) -> bool:
    """Disable (revoking its sessions) or enable an account; False when there is no such account."""
    op = get_operator(s, username)
    if op is None:
        return False
    op.disabled = disabled
    if disabled:
        revoke_operator_sessions(s, op.id, at, "operator disabled")
    s.flush()
    return True


def add_review_session(s: Session, session_id: str, operator_id: int, csrf: str, *, at: float,
                       expires_at: float, address: str | None) -> ReviewSession:
    row = ReviewSession(id=session_id, operator_id=operator_id, csrf=csrf, created_at=at, last_seen_at=at,
                        expires_at=expires_at, address=address[:64] if address else None)
    s.add(row)
    s.flush()
    return row


def live_review_session(s: Session, session_id: str, now: float) -> tuple[ReviewSession, Operator] | None:
    """The session and its operator when the session is neither revoked nor expired and the account
    exists and is enabled; None otherwise."""
    row = s.execute(select(ReviewSession, Operator).join(Operator, Operator.id == ReviewSession.operator_id)
                    .where(ReviewSession.id == session_id)).first()
    if row is None:
        return None
    session, op = row[0], row[1]
    if session.revoked_at is not None or session.expires_at <= now or op.disabled:
        return None
    return session, op


def touch_review_session(s: Session, session_id: str, at: float) -> None:
    s.execute(update(ReviewSession).where(ReviewSession.id == session_id).values(last_seen_at=at))


def revoke_review_session(s: Session, session_id: str, at: float, why: str) -> None:
    s.execute(update(ReviewSession).where(ReviewSession.id == session_id, ReviewSession.revoked_at.is_(None))
              .values(revoked_at=at, revoked_why=why))


def purge_review_sessions(s: Session, before: float) -> int:
    """Delete sessions that expired or were revoked before ``before``."""
    result = s.execute(delete(ReviewSession).where(
        (ReviewSession.expires_at < before) | (ReviewSession.revoked_at < before)))
    return int(getattr(result, "rowcount", 0) or 0)


def login_throttles(s: Session, keys: Sequence[str]) -> dict[str, LoginThrottle]:
    return {r.key: r for r in s.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))}


def record_login_failure(s: Session, key: str, *, failures: int, at: float, blocked_until: float) -> None:
    row = s.get(LoginThrottle, key)
    if row is None:
        s.add(LoginThrottle(key=key, failures=failures, last_failure_at=at, blocked_until=blocked_until))
    else:
        row.failures, row.last_failure_at, row.blocked_until = failures, at, blocked_until
    s.flush()


def clear_login_failures(s: Session, key: str) -> None:
    s.execute(delete(LoginThrottle).where(LoginThrottle.key == key))


# ---------------------------------------------------------------- ticket service: held events, place locks
# (tickets owner: issue 14 held-event timeout, issue 17 two ticket services on one database)

def lock_incident(s: Session, incident_id: str) -> Incident | None:
    """The incident row locked for this transaction (FOR UPDATE), None when there is none yet."""
    return s.scalars(select(Incident).where(Incident.id == incident_id).with_for_update()).one_or_none()


def lock_place(s: Session, key: str) -> None:
    """Serialize ticket creation at one place across ticket services (a transaction-scoped PostgreSQL
    advisory lock on ``key``). Row locks cannot do it: the ticket to lock may not exist yet. SQLite
    needs nothing: its writers already queue (BEGIN IMMEDIATE)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


def held_incidents(s: Session, received_before: float) -> list[tuple[str, float]]:
    """(incident id, oldest receive time) of incidents with an event still waiting for an earlier one,
    received before ``received_before``; oldest first."""
    rows = s.execute(select(InboxRow.incident_id, func.min(InboxRow.received_at))
                     .where(InboxRow.applied_at.is_(None), InboxRow.received_at < received_before)
                     .group_by(InboxRow.incident_id).order_by(func.min(InboxRow.received_at))).all()
    return [(str(i), float(t)) for i, t in rows]


def held_events(s: Session, incident_id: str) -> Sequence[InboxRow]:
    """Events of one incident received but not applied (waiting for an earlier seq), by seq."""
    return s.scalars(select(InboxRow).where(InboxRow.incident_id == incident_id, InboxRow.applied_at.is_(None))
                     .order_by(InboxRow.seq)).all()


def drop_inbox_row(s: Session, row: InboxRow) -> None:
    """Forget a received event (it went to the dead letters): a later re-send is received afresh."""
    s.execute(delete(InboxRow).where(InboxRow.incident_id == row.incident_id, InboxRow.seq == row.seq))


# ---------------------------------------------------------------- durability: incidents left open at a stop
# (outbox durability owner: issue 14 item 3, reconciled at stop and restart)

def open_incidents_of(s: Session, camera_ids: Sequence[str]) -> Sequence[Incident]:
    """Incidents still open (from the pipeline's point of view) on these cameras, oldest first."""
    if not camera_ids:
        return []
    return s.scalars(select(Incident).where(Incident.state == "open", Incident.camera_id.in_(list(camera_ids)))
                     .order_by(Incident.started_at, Incident.id)).all()
