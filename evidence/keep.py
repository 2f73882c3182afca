"""Which incidents' evidence retention must keep, asked of the database (storage package).

Kept: incidents the pipeline still has open, and incidents whose ticket is not closed — both the
incident a ticket was opened by and incidents merged into it. A ticket state counts as closed only
when it is one of :data:`CLOSED_TICKET_STATES`; any other (or unknown) state keeps the evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from evidence.retention import KeepCheck
from storage.db import Database
from storage.models import Incident, Ticket

CLOSED_TICKET_STATES = frozenset({"closed", "archived", "rejected", "cancelled"})


def open_ticket_keep(db: Database) -> KeepCheck:
    def keep(incident_ids: Sequence[str]) -> set[str]:
        ids = list(incident_ids)
        kept: set[str] = set()
        with db.transaction() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                kept.update(s.scalars(select(Incident.id).where(Incident.id.in_(chunk),
                                                                Incident.state == "open")))
                open_ticket = Ticket.state.not_in(CLOSED_TICKET_STATES)
                kept.update(s.scalars(select(Incident.id).join(Ticket, Incident.ticket_id == Ticket.id)
                                      .where(Incident.id.in_(chunk), open_ticket)))
                kept.update(s.scalars(select(Ticket.incident_id).where(Ticket.incident_id.in_(chunk),
                                                                       open_ticket)))
        return kept

    return keep


__all__ = ["CLOSED_TICKET_STATES", "open_ticket_keep"]
