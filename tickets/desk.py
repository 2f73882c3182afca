"""What the ticket service does with an incident event, a transition or a verification result.

Each entry point is one database transaction, so a crash leaves either all of it or none:
the dedupe row (incident id + seq), the incident, the ticket and its history go in together.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from camera_config.schema import TicketsConfig
from core.events import IncidentEvent
from core.topics import Topics
from storage import repository as repo
from storage.db import Database
from storage.errors import NotFound
from storage.models import Incident, Ticket, TicketHistory
from tickets.routing import deadline_s, route
from tickets.states import OPEN_STATES, Timings, check_transition, loop_timings

log = logging.getLogger(__name__)

SERVICE_ACTOR = "tickets"
VERIFIER_ACTOR = "verifier"


def apply_event(db: Database, cfg: TicketsConfig, ev: IncidentEvent, topic: str) -> str:
    """Take one received event: 'duplicate', 'held' (an earlier seq is missing) or 'applied'.

    Events of one incident are applied strictly in seq order; one that arrives early waits in the
    inbox and is applied when the gap fills.
    """
    with db.transaction() as s:
        repo.ensure_incident(s, ev)  # locks the incident: concurrent consumers queue here
        if not repo.receive(s, ev, topic):
            return "duplicate"
        done = repo.applied_seq(s, ev.incident_id)
        applied = 0
        for row in repo.held_events(s, ev.incident_id):  # by seq: apply while contiguous
            if row.seq != done + 1:
                break
            _apply_in_order(s, cfg, IncidentEvent.model_validate_json(row.payload))
            repo.mark_applied(s, row)
            done += 1
            applied += 1
        return "applied" if applied else "held"


def _apply_in_order(s: Session, cfg: TicketsConfig, ev: IncidentEvent) -> None:
    inc = repo.apply_incident_event(s, ev)
    if inc.ticket_id is None and ev.event != "closed":
        ticket = _ticket_for(s, cfg, ev)
        inc.ticket_id = ticket.id
    elif inc.ticket_id is not None:
        ticket = repo.get_ticket(s, inc.ticket_id, lock=True)
        ticket.last_incident_at = max(ticket.last_incident_at, ev.event_at)
        ticket.updated_at = time.time()


def _same_place(ticket: Ticket, ev: IncidentEvent, max_distance: float) -> bool:
    if ev.location is None or ticket.location_x is None or ticket.location_y is None:
        return True
    return math.dist(ev.location, (ticket.location_x, ticket.location_y)) <= max_distance


def _ticket_for(s: Session, cfg: TicketsConfig, ev: IncidentEvent) -> Ticket:
    """Join an open ticket at the same place within the merge window, or open a new one.

    The place is locked first, so two ticket services taking two incidents at one place at once
    make one ticket, not two.
    """
    repo.lock_place(s, f"ticket-place|{ev.type}|{ev.camera_id}|{ev.zone_id}")
    now = time.time()
    for ticket in repo.candidate_tickets(s, type=ev.type, camera_id=ev.camera_id, zone_id=ev.zone_id,
                                         states=OPEN_STATES, since=ev.started_at - cfg.merge_window_s):
        if _same_place(ticket, ev, cfg.merge_distance):
            ticket.incident_count += 1
            ticket.last_incident_at = max(ticket.last_incident_at, ev.event_at)
            ticket.updated_at = now
            repo.add_history(s, ticket.id, ticket.state, ticket.state, actor=SERVICE_ACTOR, at=now,
                             reason=f"incident {ev.incident_id} at the same place joined this ticket",
                             evidence={"incident_id": ev.incident_id, "links": dict(ev.evidence.links)})
            return ticket
    department = route(cfg, ev.grid_cell, ev.type)
    ticket = repo.add_ticket(s, ev, department, ev.started_at + deadline_s(cfg, ev.type), "accepted",
                             actor=SERVICE_ACTOR, at=now,
                             reason=f"incident {ev.incident_id} ({ev.type}) accepted; department {department} "
                                    f"by grid cell {ev.grid_cell}")
    ticket.category_code = cfg.category_codes.get(ev.type)
    return ticket


def transition(s: Session, ticket_id: int, target: str, *, actor: str, reason: str,
               evidence: dict[str, Any] | None = None, topics: Topics | None = None,
               verify_duration_s: float = 4.0) -> Ticket:
    """Move a ticket; refused (:class:`TransitionError`, nothing changed) unless the loop allows it.

    Going to ``disposed`` also queues a verification request in the outbox, in the same transaction.
    """
    ticket = repo.get_ticket(s, ticket_id, lock=True)
    state = check_transition(ticket_id, ticket.state, target)
    if not actor.strip():
        raise ValueError("a transition needs an actor (who)")
    now = time.time()
    previous = ticket.state
    ticket.state = state
    ticket.updated_at = now
    if state == "disposed":
        ticket.verify_request_id = uuid.uuid4().hex
        request = verify_request(ticket, now, verify_duration_s)
        repo.enqueue(s, (topics or Topics()).verify_request(ticket.camera_id), json.dumps(request, sort_keys=True))
    repo.add_history(s, ticket.id, previous, state, actor=actor, reason=reason, at=now, evidence=evidence)
    return ticket


def retry_stale_verifications(s: Session, now: float, cfg: TicketsConfig, topics: Topics) -> list[int]:
    """Disposed tickets whose verification got no answer for ``verify_timeout_s``: ask again.

    The new request id makes any late answer to the old request stale (ignored).
    """
    retried = []
    for ticket in repo.list_tickets(s, states=["disposed"], limit=1_000):
        if ticket.updated_at > now - cfg.verify_timeout_s:
            continue
        ticket.verify_request_id = uuid.uuid4().hex
        ticket.updated_at = now
        repo.enqueue(s, topics.verify_request(ticket.camera_id),
                     json.dumps(verify_request(ticket, now, cfg.verify_duration_s), sort_keys=True))
        retried.append(ticket.id)
    return retried


def verify_request(ticket: Ticket, now: float, duration_s: float) -> dict[str, Any]:
    loc = None if ticket.location_x is None else [ticket.location_x, ticket.location_y]
    return {"request_id": ticket.verify_request_id, "ticket_id": ticket.id, "camera_id": ticket.camera_id,
            "zone_id": ticket.zone_id, "type": ticket.type, "location": loc, "duration_s": duration_s,
            "requested_at": now, "category_code": ticket.category_code}


class VerifyIgnored(Exception):
    """A verify result this service did not ask for (forged, stale or repeated); the text says why."""


def _verify_refusal(ticket: Ticket, result: dict[str, Any], camera_id: str | None) -> str | None:
    if ticket.state != "disposed":
        return f"ticket {ticket.id} is {ticket.state!r}, not awaiting verification"
    if ticket.verify_request_id is None or ticket.verify_request_id != result.get("request_id"):
        return f"request id {str(result.get('request_id'))[:64]!r} is not the open verify request of ticket {ticket.id}"
    for where, camera in (("topic", camera_id), ("payload", result.get("camera_id"))):
        if camera is not None and camera != ticket.camera_id:
            return f"the {where} names camera {str(camera)[:64]!r}; ticket {ticket.id} is on {ticket.camera_id!r}"
    return None


def apply_verify_result(db: Database, result: dict[str, Any], *, camera_id: str | None = None,
                        archive: bool = False) -> str:
    """Disposed ticket + matching request: 'verified' or 'dispatched' (problem still there).

    Only an answer to a request this service made counts: the ticket exists and is disposed, the
    request id is the one sent for it (a random 128-bit id only the verifiers read: topic ACL), and
    the camera of the result's topic (``camera_id``; the verifier's ACL alone may write
    ``verify/result/#``) and payload is the ticket's. Anything else raises :class:`VerifyIgnored`.
    With ``archive`` a verified ticket is archived at once (the loop's last step; 'archived').
    """
    with db.transaction() as s:
        try:
            ticket = repo.get_ticket(s, int(result["ticket_id"]), lock=True)
        except NotFound as exc:
            raise VerifyIgnored(f"no ticket {result['ticket_id']}") from exc
        refusal = _verify_refusal(ticket, result, camera_id)
        if refusal is not None:
            raise VerifyIgnored(refusal)
        present = bool(result["present"])
        evidence: dict[str, Any] = {k: result[k] for k in ("request_id", "present", "frames", "frames_present", "boxes",
                                           "checked_at", "error") if k in result}
        if present:
            transition(s, ticket.id, "dispatched", actor=VERIFIER_ACTOR, evidence=evidence,
                       reason=f"re-check of camera {ticket.camera_id} zone {ticket.zone_id}: problem still "
                              f"there in {result.get('frames_present')}/{result.get('frames')} frames")
        else:
            transition(s, ticket.id, "verified", actor=VERIFIER_ACTOR, evidence=evidence,
                       reason=f"re-check of camera {ticket.camera_id} zone {ticket.zone_id}: gone "
                              f"({result.get('frames_present')}/{result.get('frames')} frames)")
        ticket.verify_request_id = None
        if archive and ticket.state == "verified":
            transition(s, ticket.id, "archived", actor=SERVICE_ACTOR,
                       reason="verified: the problem is gone, the loop is closed")
        return ticket.state


def _seq_ranges(seqs: list[int]) -> str:
    out: list[str] = []
    for q in seqs:
        if out and q == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{q}"
        else:
            out.append(str(q))
    return ", ".join(out)


def expire_held(db: Database, now: float, timeout_s: float) -> list[str]:
    """Dead-letter events held longer than ``timeout_s`` for an earlier event that never came.

    One transaction per incident, with the incident locked: an earlier event arriving at the same
    moment is either applied first (and the held one with it) or finds the held one gone. The inbox
    row goes, so a later re-send of the event is received afresh. Returns the reasons.
    """
    with db.transaction() as s:
        stale = [incident_id for incident_id, _at in repo.held_incidents(s, now - timeout_s)]
    reasons = []
    for incident_id in stale:
        with db.transaction() as s:
            if repo.lock_incident(s, incident_id) is None:
                continue
            done = repo.applied_seq(s, incident_id)
            held = repo.held_events(s, incident_id)
            have = {row.seq for row in held}
            for row in held:
                if row.received_at >= now - timeout_s:
                    continue
                gap = (_seq_ranges([q for q in range(done + 1, row.seq) if q not in have])
                       if row.seq - done <= 1_000 else f"{done + 1}-{row.seq - 1}")
                reason = (f"held {now - row.received_at:.0f} s (held_timeout_s {timeout_s:g}): incident "
                          f"{incident_id} seq {row.seq} waits for seq {gap}, which never arrived "
                          f"(last applied seq {done})")
                repo.add_dead_letter(s, row.topic, row.payload.encode("utf-8"), reason)
                repo.drop_inbox_row(s, row)
                reasons.append(reason)
    return reasons


# ---------------------------------------------------------------- views (JSON for the CLI)

def ticket_view(s: Session, ticket: Ticket, *, full: bool = False, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    out: dict[str, Any] = {
        "id": ticket.id, "state": ticket.state, "type": ticket.type, "department": ticket.department,
        "camera_id": ticket.camera_id, "grid_cell": ticket.grid_cell, "zone_id": ticket.zone_id,
        "incident_id": ticket.incident_id, "incident_count": ticket.incident_count,
        "created_at": ticket.created_at, "updated_at": ticket.updated_at, "due_at": ticket.due_at,
        "overdue_s": round(now - ticket.due_at, 1) if ticket.state in OPEN_STATES and now > ticket.due_at
        else None,
        "category_code": ticket.category_code,
    }
    history = repo.ticket_history(s, ticket.id)
    out["timings"] = timings_of(ticket, history, now).as_dict()
    if full:
        out["history"] = [
            {"at": h.at, "actor": h.actor, "from": h.from_state, "to": h.to_state, "reason": h.reason,
             "evidence": json.loads(h.evidence) if h.evidence else None}
            for h in history]
        out["incidents"] = [_incident_view(s, i) for i in repo.incidents_of_ticket(s, ticket.id)]
    return out


def timings_of(ticket: Ticket, history: Sequence[TicketHistory], now: float) -> Timings:
    """The ticket's :class:`~tickets.states.Timings` from its history rows (oldest first)."""
    return loop_timings([(h.at, h.to_state) for h in history], due_at=ticket.due_at, state=ticket.state,
                        now=now)


def _incident_view(s: Session, inc: Incident) -> dict[str, Any]:
    return {"id": inc.id, "state": inc.state, "started_at": inc.started_at, "last_seq": inc.last_seq,
            "evidence": [{"kind": e.kind, "path": e.path, "sha256": e.sha256}
                         for e in repo.evidence_of(s, inc.id)]}
