"""Which incidents' evidence retention must keep, asked of the database (storage package).

Kept: incidents the pipeline still has open, and incidents whose ticket is open — in one of the
ticket service's :data:`tickets.states.OPEN_STATES` (accepted, dispatched, disposed, reopened) —
both the incident a ticket was opened by and incidents merged into it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from evidence.retention import KeepCheck
from storage.db import Database
from storage.models import Incident, Ticket
from tickets.states import OPEN_STATES


def open_ticket_keep(db: Database) -> KeepCheck:
    def keep(incident_ids: Sequence[str]) -> set[str]:
        ids = list(incident_ids)
        kept: set[str] = set()
        with db.transaction() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                kept.update(s.scalars(select(Incident.id).where(Incident.id.in_(chunk),
                                                                Incident.state == "open")))
                open_ticket = Ticket.state.in_(OPEN_STATES)
                kept.update(s.scalars(select(Incident.id).join(Ticket, Incident.ticket_id == Ticket.id)
                                      .where(Incident.id.in_(chunk), open_ticket)))
                kept.update(s.scalars(select(Ticket.incident_id).where(Ticket.incident_id.in_(chunk),
                                                                       open_ticket)))
        return kept

    return keep


__all__ = ["OPEN_STATES", "open_ticket_keep"]
