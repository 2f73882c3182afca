"""The review queue: incidents with their review status, filtered, in a stable order.

Review status comes from the latest operator verdict: ``unreviewed``, ``confirmed`` or ``rejected``.
Filters: camera, grid cell, incident type, review status, and a time range on the incident's start.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Incident, IncidentEventRow, Verdict

ReviewStatus = Literal["unreviewed", "confirmed", "rejected"]
STATUSES: tuple[str, ...] = ("unreviewed", "confirmed", "rejected", "all")
QUEUE_LIMIT = 500


@dataclass(frozen=True, slots=True)
class QueueFilter:
    camera: str | None = None
    grid_cell: str | None = None
    type: str | None = None
    status: str = "unreviewed"
    since: float | None = None
    until: float | None = None

    def query_string(self, tz: str | None = None) -> str:
        from urllib.parse import urlencode

        params = {"camera": self.camera, "grid_cell": self.grid_cell, "type": self.type,
                  "status": self.status, "since": _to_local(self.since, tz), "until": _to_local(self.until, tz)}
        return urlencode({k: v for k, v in params.items() if v})


@dataclass(slots=True)
class QueueItem:
    id: str
    type: str
    camera_id: str
    grid_cell: str
    zone_id: str | None
    severity: str
    state: str
    started_at: float
    last_event_at: float
    status: str
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "camera_id": self.camera_id, "grid_cell": self.grid_cell,
                "zone_id": self.zone_id, "severity": self.severity, "state": self.state,
                "started_at": self.started_at, "last_event_at": self.last_event_at,
                "review_status": self.status, "verdicts": self.verdicts}


def parse_local_time(text: str | None, tz: str, field_name: str) -> float | None:
    """``YYYY-MM-DDTHH:MM`` (or with seconds, or a date) in the site's zone -> Unix time."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{field_name}: expected a date and time like 2026-11-26T18:30, got {text!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    return when.timestamp()


def _to_local(ts: float | None, tz: str | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, ZoneInfo(tz or "UTC")).strftime("%Y-%m-%dT%H:%M")


def _verdict_dict(v: Verdict) -> dict[str, Any]:
    return {"id": v.id, "verdict": v.verdict, "reason": v.reason, "operator": v.operator, "at": v.at}


def list_queue(s: Session, f: QueueFilter, limit: int = QUEUE_LIMIT) -> list[QueueItem]:
    q = select(Incident).where(Incident.type != "camera_offline")
    if f.camera:
        q = q.where(Incident.camera_id == f.camera)
    if f.grid_cell:
        q = q.where(Incident.grid_cell == f.grid_cell)
    if f.type:
        q = q.where(Incident.type == f.type)
    if f.since is not None:
        q = q.where(Incident.started_at >= f.since)
    if f.until is not None:
        q = q.where(Incident.started_at <= f.until)
    rows = s.scalars(q.order_by(Incident.started_at.desc(), Incident.id).limit(limit * 4)).all()
    verdicts = _verdicts_by_incident(s, [r.id for r in rows])
    items = [_item(r, verdicts.get(r.id, [])) for r in rows]
    if f.status != "all":
        items = [i for i in items if i.status == f.status]
    return items[:limit]


def _verdicts_by_incident(s: Session, ids: Sequence[str]) -> dict[str, list[Verdict]]:
    out: dict[str, list[Verdict]] = {}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start:chunk_start + 500]
        for v in s.scalars(select(Verdict).where(Verdict.incident_id.in_(chunk)).order_by(Verdict.id)):
            out.setdefault(v.incident_id, []).append(v)
    return out


def _item(row: Incident, verdicts: Sequence[Verdict]) -> QueueItem:
    status = "unreviewed" if not verdicts else ("confirmed" if verdicts[-1].verdict == "confirm" else "rejected")
    return QueueItem(row.id, row.type, row.camera_id, row.grid_cell, row.zone_id, row.severity, row.state,
                     row.started_at, row.last_event_at, status, [_verdict_dict(v) for v in verdicts])


def get_item(s: Session, incident_id: str) -> QueueItem | None:
    row = s.get(Incident, incident_id)
    if row is None:
        return None
    return _item(row, _verdicts_by_incident(s, [incident_id]).get(incident_id, []))


def events_of(s: Session, incident_id: str) -> list[dict[str, Any]]:
    rows = s.scalars(select(IncidentEventRow).where(IncidentEventRow.incident_id == incident_id)
                     .order_by(IncidentEventRow.seq)).all()
    out = []
    for r in rows:
        try:
            payload = json.loads(r.payload)
        except ValueError:
            payload = {}
        out.append({"seq": r.seq, "event": r.event, "event_at": r.event_at, "payload": payload})
    return out


def distinct_values(s: Session) -> dict[str, list[str]]:
    """Cameras, grid cells and types present, for the filter menus."""
    rows = s.execute(select(Incident.camera_id, Incident.grid_cell, Incident.type).distinct()).all()
    return {"camera": sorted({r[0] for r in rows}), "grid_cell": sorted({r[1] for r in rows}),
            "type": sorted({r[2] for r in rows if r[2] != "camera_offline"})}


def neighbours(items: Sequence[QueueItem], incident_id: str) -> tuple[str | None, str | None]:
    ids = [i.id for i in items]
    if incident_id not in ids:
        return (None, ids[0] if ids else None)
    k = ids.index(incident_id)
    return (ids[k - 1] if k > 0 else None, ids[k + 1] if k + 1 < len(ids) else None)
