"""The evidence store's side of the database: what retention must keep, and file references.

Kept: incidents the pipeline still has open, and incidents whose ticket is open — in one of the
states the caller names (the CLI passes the ticket service's :data:`tickets.states.OPEN_STATES`;
evidence sits below tickets and never imports them) — both the incident a ticket was opened by and
incidents merged into it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import select

from evidence.retention import KeepCheck
from storage import repository as repo
from storage.db import Database
from storage.errors import NotFound, StorageError
from storage.models import Incident, Ticket

log = logging.getLogger(__name__)


def open_ticket_keep(db: Database, open_ticket_states: Collection[str]) -> KeepCheck:
    """A retention keep check: of the incident ids asked about, those still open or whose ticket is in
    one of ``open_ticket_states``."""
    states = sorted(open_ticket_states)
    if not states:
        raise ValueError("open_ticket_keep: open_ticket_states is empty; evidence of open tickets would be deleted")

    def keep(incident_ids: Sequence[str]) -> set[str]:
        ids = list(incident_ids)
        kept: set[str] = set()
        with db.transaction() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                kept.update(s.scalars(select(Incident.id).where(Incident.id.in_(chunk),
                                                                Incident.state == "open")))
                open_ticket = Ticket.state.in_(states)
                kept.update(s.scalars(select(Incident.id).join(Ticket, Incident.ticket_id == Ticket.id)
                                      .where(Incident.id.in_(chunk), open_ticket)))
                kept.update(s.scalars(select(Ticket.incident_id).where(Ticket.incident_id.in_(chunk),
                                                                       open_ticket)))
        return kept

    return keep


def reference_writer(db: Database, store_prefix: str = "") -> Callable[[str, dict[str, Any]], None]:
    """An ``on_written`` callback for :class:`evidence.recorder.EvidenceRecorder`: once the clip is
    settled (written, failed or unavailable), record every evidence file with its sha256 in the
    database's evidence table, so the files can be checked against the database later.

    Runs on the clip writer's thread; a database error is logged, never raised into the writer.
    """

    def write(incident_id: str, manifest: dict[str, Any]) -> None:
        if manifest.get("clip", {}).get("status") == "pending":
            return  # the incident row may not be committed yet; the final manifest follows
        kinds = {"clip.mp4": "clip", "snapshot.jpg": "snapshot", "frame.jpg": "frame"}
        try:
            with db.transaction() as s:
                for name, info in manifest.get("files", {}).items():
                    repo.add_evidence(s, incident_id, kinds.get(name, name), f"{store_prefix}{incident_id}/{name}",
                                      info.get("sha256"))
                repo.add_evidence(s, incident_id, "manifest", f"{store_prefix}{incident_id}/manifest.json", None)
        except (StorageError, NotFound) as exc:
            log.error("evidence references not stored: %s", exc, extra={"incident": incident_id})

    return write
