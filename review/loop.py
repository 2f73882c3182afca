"""The loop driven from the review page: an operator's verdict moves the incident's ticket.

* **confirm**: the ticket goes ``dispatched`` to its routed department (from ``accepted`` or
  ``reopened``); a ticket already further on is left as it is (a second confirm of a joined incident).
* **reject**: the ticket goes ``rejected`` with the operator's reason (from ``accepted``,
  ``dispatched`` or ``reopened``); the verdict row itself marks the incident a false alarm, which
  ``patrol eval export-labels`` turns into a quiet span.

The operator is the transition's actor. An incident the ticket service has not made a ticket for yet
has nothing to move (None). Department members mark a ticket disposed with :func:`dispose`, which
queues the verification re-check (:func:`tickets.desk.transition`).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.topics import Topics
from storage import repository as repo
from storage.db import Database
from storage.errors import NotFound
from storage.models import Ticket
from tickets.desk import transition
from tickets.states import TRANSITIONS

VERDICT_TARGET = {"confirm": "dispatched", "reject": "rejected"}


@dataclass(frozen=True, slots=True)
class LoopStep:
    ticket_id: int
    from_state: str
    to_state: str


def apply_verdict(db: Database, incident_id: str, verdict: str, *, operator: str, reason: str) -> LoopStep | None:
    """Move the incident's ticket for this verdict; None when there is no ticket or nothing to move."""
    target = VERDICT_TARGET[verdict]
    with db.transaction() as s:
        inc = repo.get_incident(s, incident_id)
        if inc.ticket_id is None:
            return None
        ticket = repo.get_ticket(s, inc.ticket_id, lock=True)
        previous = ticket.state
        if target not in TRANSITIONS.get(previous, frozenset()):  # type: ignore[call-overload]
            return None
        why = (f"operator {operator} confirmed incident {incident_id}; dispatched to {ticket.department}"
               if verdict == "confirm" else f"operator {operator} rejected incident {incident_id}: {reason}")
        transition(s, ticket.id, target, actor=operator, reason=why,
                   evidence={"incident_id": incident_id, "verdict": verdict})
        return LoopStep(ticket.id, previous, target)


class NotYours(Exception):
    """The ticket is not this department's (the page answers 404: it does not exist for them)."""


def department_ticket(db: Database, ticket_id: int, department: str | None) -> Ticket:
    """The ticket when ``department`` (None: an admin, any) may see it, else :class:`NotYours`."""
    with db.transaction() as s:
        try:
            ticket = repo.get_ticket(s, ticket_id)
        except NotFound as exc:
            raise NotYours(ticket_id) from exc
        if department is not None and ticket.department != department:
            raise NotYours(ticket_id)
        s.expunge(ticket)
        return ticket


def dispose(db: Database, ticket_id: int, department: str | None, *, member: str, note: str,
            topic_prefix: str, verify_duration_s: float = 4.0) -> Ticket:
    """A department member marks its dispatched ticket disposed with a note; the verify request goes
    out through the outbox in the same transaction. Raises :class:`NotYours` or
    :class:`tickets.states.TransitionError`."""
    with db.transaction() as s:
        try:
            ticket = repo.get_ticket(s, ticket_id, lock=True)
        except NotFound as exc:
            raise NotYours(ticket_id) from exc
        if department is not None and ticket.department != department:
            raise NotYours(ticket_id)
        out = transition(s, ticket_id, "disposed", actor=member, reason=f"disposed by {member}: {note}",
                         evidence={"note": note}, topics=Topics(topic_prefix), verify_duration_s=verify_duration_s)
        s.flush()
        s.expunge(out)
        return out
