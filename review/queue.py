"""The review queue: incidents with their review status, filtered, in a stable order.

Review status comes from the latest operator verdict: ``unreviewed``, ``confirmed`` or ``rejected``.
Filters: camera, grid cell, incident type, review status, and a time range on the incident's start.
Everything is filtered, counted and paged in SQL (no cap: a page and the total, never a silent limit).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from storage.models import Incident, IncidentEventRow, Verdict

ReviewStatus = Literal["unreviewed", "confirmed", "rejected"]
STATUSES: tuple[str, ...] = ("unreviewed", "confirmed", "rejected", "all")
PAGE_SIZE = 50
"""Incidents per queue page (``per_page`` chooses another, within the bounds below)."""
MIN_PAGE_SIZE, MAX_PAGE_SIZE = 5, 200


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


def _latest_verdict() -> tuple[Any, Any]:
    """(latest verdict per incident as a subquery, the Verdict alias joined to it)."""
    latest = select(Verdict.incident_id, func.max(Verdict.id).label("vid")).group_by(Verdict.incident_id).subquery()
    return latest, aliased(Verdict)


def _filtered(f: QueueFilter, *, facet: str | None = None) -> tuple[Select[Any], Any]:
    """The queue's query with every filter of ``f`` except ``facet`` (for that facet's counts), and the
    review-status expression (from the latest verdict)."""
    latest, lv = _latest_verdict()
    status = case((lv.id.is_(None), "unreviewed"), (lv.verdict == "confirm", "confirmed"), else_="rejected")
    q = (select(Incident).outerjoin(latest, latest.c.incident_id == Incident.id)
         .outerjoin(lv, lv.id == latest.c.vid).where(Incident.type != "camera_offline"))
    if f.camera:
        q = q.where(Incident.camera_id == f.camera)
    if f.grid_cell:
        q = q.where(Incident.grid_cell == f.grid_cell)
    if f.type and facet != "type":
        q = q.where(Incident.type == f.type)
    if f.since is not None:
        q = q.where(Incident.started_at >= f.since)
    if f.until is not None:
        q = q.where(Incident.started_at <= f.until)
    if f.status != "all" and facet != "status":
        q = q.where(status == f.status)
    return q, status


@dataclass(frozen=True, slots=True)
class QueuePage:
    items: list[QueueItem]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first(self) -> int:
        """1-based position of the page's first item (0 when the queue is empty)."""
        return (self.page - 1) * self.per_page + 1 if self.items else 0

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1 if self.items else 0


def list_queue(s: Session, f: QueueFilter, limit: int = PAGE_SIZE, offset: int = 0) -> list[QueueItem]:
    """Newest first (start time, then id), ``limit`` items from ``offset``."""
    q, _ = _filtered(f)
    rows = s.scalars(q.order_by(Incident.started_at.desc(), Incident.id).offset(offset).limit(limit)).all()
    verdicts = _verdicts_by_incident(s, [r.id for r in rows])
    return [_item(r, verdicts.get(r.id, [])) for r in rows]


def count_queue(s: Session, f: QueueFilter) -> int:
    q, _ = _filtered(f)
    return int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)


def queue_page(s: Session, f: QueueFilter, page: int = 1, per_page: int = PAGE_SIZE) -> QueuePage:
    """One page of the queue and the total; a page past the end is the last page."""
    if page < 1 or not MIN_PAGE_SIZE <= per_page <= MAX_PAGE_SIZE:
        raise ValueError(f"page must be 1 or more and per_page {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}, "
                         f"got page={page}, per_page={per_page}")
    total = count_queue(s, f)
    page = min(page, max(1, -(-total // per_page)))
    return QueuePage(list_queue(s, f, per_page, (page - 1) * per_page), total, page, per_page)


def queue_counts(s: Session, f: QueueFilter) -> dict[str, dict[str, int]]:
    """Incidents per type, per review status and per incident state. Each facet counts under every
    filter but its own (the type counts ignore the type filter), so each number says what choosing
    that value would show."""
    out: dict[str, dict[str, int]] = {}
    q, _ = _filtered(f, facet="type")
    sub = q.subquery()
    out["type"] = {t: n for t, n in s.execute(select(sub.c.type, func.count()).group_by(sub.c.type))}
    q, status = _filtered(f, facet="status")
    sub = q.add_columns(status.label("review_status")).subquery()
    out["status"] = {st: n for st, n in s.execute(select(sub.c.review_status, func.count())
                                                   .group_by(sub.c.review_status))}
    out["status"]["all"] = sum(out["status"].values())
    q, _ = _filtered(f)
    sub = q.subquery()
    out["state"] = {st: n for st, n in s.execute(select(sub.c.state, func.count()).group_by(sub.c.state))}
    return out


def neighbours(s: Session, f: QueueFilter, incident_id: str) -> tuple[str | None, str | None]:
    """The incidents before and after one in the filtered queue's order (newest first); for an incident
    outside the queue (just reviewed, say) the neighbours of where it would stand."""
    row = s.get(Incident, incident_id)
    if row is None:
        return None, None
    q, _ = _filtered(f)
    q = q.where(Incident.id != incident_id)
    newer = or_(Incident.started_at > row.started_at,
                and_(Incident.started_at == row.started_at, Incident.id < row.id))
    prev_id = s.scalar(q.where(newer).with_only_columns(Incident.id)
                       .order_by(Incident.started_at.asc(), Incident.id.desc()).limit(1))
    next_id = s.scalar(q.where(~newer).with_only_columns(Incident.id)
                       .order_by(Incident.started_at.desc(), Incident.id).limit(1))
    return prev_id, next_id


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
