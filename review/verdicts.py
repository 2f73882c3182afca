"""An operator's verdict: recorded in the database and queued for MQTT in the same transaction.

The message goes to ``{prefix}/verdicts/{camera}`` through the storage outbox, so a verdict is never
lost when the broker is down: the outbox publisher sends it (QoS 1) once the broker is back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from core.topics import Topics
from storage import repository as repo
from storage.db import Database

VerdictKind = Literal["confirm", "reject"]
VERDICT_SCHEMA_VERSION = 1
MAX_REASON = 500


class VerdictRejected(ValueError):
    """The verdict request is incomplete (e.g. a rejection without a reason).

    ``msgid`` is the English message with named placeholders, ``params`` their values: the review page
    shows it in the operator's language (:func:`review.i18n.message_of`), the API as it is."""

    def __init__(self, msgid: str, **params: object) -> None:
        super().__init__(msgid % params if params else msgid)
        self.msgid = msgid
        self.params = params


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    verdict_id: int
    topic: str
    payload: dict[str, Any]


def record_verdict(db: Database, incident_id: str, operator: str, verdict: str, reason: str,
                   topic_prefix: str, at: float) -> VerdictRecord:
    """Store the verdict and its outbox message atomically. Raises VerdictRejected or storage NotFound."""
    if verdict not in ("confirm", "reject"):
        raise VerdictRejected("verdict must be 'confirm' or 'reject', got %(verdict)r", verdict=verdict)
    reason = reason.strip()
    if verdict == "reject" and not reason:
        raise VerdictRejected("a rejection needs a reason (it is used to tune the rules)")
    if len(reason) > MAX_REASON:
        raise VerdictRejected("reason longer than %(max)d characters", max=MAX_REASON)
    with db.transaction() as s:
        row = repo.add_verdict(s, incident_id, operator, verdict, reason, at=at)
        inc = repo.get_incident(s, incident_id)
        payload = {
            "schema_version": VERDICT_SCHEMA_VERSION, "verdict_id": row.id, "incident_id": incident_id,
            "camera_id": inc.camera_id, "grid_cell": inc.grid_cell, "type": inc.type, "zone_id": inc.zone_id,
            "verdict": verdict, "reason": reason, "operator": operator, "at": at,
        }
        topic = Topics(topic_prefix).verdict(inc.camera_id)
        repo.enqueue(s, topic, json.dumps(payload, sort_keys=True))
    return VerdictRecord(row.id, topic, payload)
