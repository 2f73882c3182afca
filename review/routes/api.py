"""The JSON API under ``/api``, described by ``/openapi.json``: the session, the queue, one incident,
a verdict (POSTs need the X-CSRF-Token header from ``/api/me``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from review.deps import Ctx, evidence_urls, operator_of, queue_filter, require_csrf, session_of
from review.queue import MAX_PAGE_SIZE, MIN_PAGE_SIZE, PAGE_SIZE, QueueItem, get_item, queue_counts, queue_page
from review.routes.verdicts import record

router = APIRouter(prefix="/api")


class VerdictIn(BaseModel):
    verdict: Literal["confirm", "reject"]
    reason: str = Field(default="", max_length=500)


class VerdictOut(BaseModel):
    verdict_id: int
    incident_id: str
    verdict: str
    topic: str


class IncidentOut(BaseModel):
    id: str
    type: str
    camera_id: str
    grid_cell: str
    zone_id: str | None
    severity: str
    state: str
    started_at: float
    last_event_at: float
    review_status: str
    verdicts: list[dict[str, Any]]
    evidence: dict[str, str] = Field(default_factory=dict, description="URLs of the evidence files present.")


@router.get("/me", tags=["session"])
def api_me(request: Request) -> dict[str, str]:
    """The logged-in operator and the CSRF token POST requests must send as X-CSRF-Token."""
    session = session_of(request)
    assert session is not None
    return {"operator": operator_of(request), "csrf_token": session.csrf}


@router.get("/incidents", tags=["incidents"], response_model=list[IncidentOut])
def api_incidents(ctx: Ctx, response: Response, camera: str | None = None, grid_cell: str | None = None,
                  type: str | None = None, status: str = "unreviewed", since: str | None = None,
                  until: str | None = None, page: int = Query(1, ge=1),
                  per_page: int = Query(PAGE_SIZE, ge=MIN_PAGE_SIZE, le=MAX_PAGE_SIZE)) -> list[IncidentOut]:
    """The review queue, newest first, one page (``X-Total-Count``: incidents in the whole queue).
    ``status``: unreviewed, confirmed, rejected or all; ``since`` / ``until``: local date-time of the site,
    e.g. 2026-11-26T18:30."""
    f = queue_filter(ctx, camera, grid_cell, type, status, since, until)
    with ctx.db.transaction() as s:
        result = queue_page(s, f, page, per_page)
    response.headers["X-Total-Count"] = str(result.total)
    return [_out(i, evidence_urls(ctx, i.id)) for i in result.items]


@router.get("/queue/counts", tags=["incidents"])
def api_queue_counts(ctx: Ctx, camera: str | None = None, grid_cell: str | None = None, type: str | None = None,
                     status: str = "unreviewed", since: str | None = None,
                     until: str | None = None) -> dict[str, dict[str, int]]:
    """Incidents per ``type``, review ``status`` and incident ``state`` under the filters; each facet
    counts under every filter but its own."""
    f = queue_filter(ctx, camera, grid_cell, type, status, since, until)
    with ctx.db.transaction() as s:
        return queue_counts(s, f)


@router.get("/incidents/{incident_id}", tags=["incidents"], response_model=IncidentOut)
def api_incident(ctx: Ctx, incident_id: str) -> IncidentOut:
    with ctx.db.transaction() as s:
        item = get_item(s, incident_id)
    if item is None:
        raise HTTPException(404, f"no incident {incident_id!r}")
    return _out(item, evidence_urls(ctx, incident_id))


@router.post("/incidents/{incident_id}/verdict", tags=["incidents"], response_model=VerdictOut,
             dependencies=[Depends(require_csrf)])
def api_verdict(request: Request, ctx: Ctx, incident_id: str, body: VerdictIn) -> VerdictOut:
    """Confirm or reject (reason required). Needs the X-CSRF-Token header from /api/me."""
    rec = record(ctx, request, incident_id, body.verdict, body.reason)
    return VerdictOut(verdict_id=rec.verdict_id, incident_id=incident_id, verdict=body.verdict,
                      topic=rec.topic)


def _out(item: QueueItem, urls: dict[str, str]) -> IncidentOut:
    return IncidentOut(**item.as_dict(), evidence=urls)
