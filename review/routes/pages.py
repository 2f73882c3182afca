"""The operators' pages: the queue (filters, counts, thumbnails, pages, live rows) and one incident with
its evidence (the clip with its tracked boxes, the snapshot, the manifest, the verdict form)."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from evidence.boxes import BOXES
from evidence.errors import EvidenceError
from evidence.manifest import verify_manifest
from review.deps import Ctx, ReviewContext, evidence_urls, queue_filter, render
from review.i18n import UserError
from review.queue import (
    PAGE_SIZE,
    STATUSES,
    QueueFilter,
    QueuePage,
    distinct_values,
    events_of,
    get_item,
    neighbours,
    queue_counts,
    queue_page,
)

log = logging.getLogger("patrol.review")

router = APIRouter(include_in_schema=False)

POLL_MS = 5_000
"""How often the queue page asks for its rows again (new incidents appear without a reload)."""


@router.get("/")
def home() -> Response:
    return RedirectResponse("/queue", status_code=303)


def _page_of(ctx: ReviewContext, f: QueueFilter, page: int, per_page: int) -> tuple[QueuePage, dict[str, Any]]:
    try:
        with ctx.db.transaction() as s:
            result = queue_page(s, f, page, per_page)
            counts = queue_counts(s, f)
    except ValueError as exc:
        raise UserError(422, "Page numbers start at 1 and a page holds %(lo)d to %(hi)d incidents.",
                        lo=5, hi=200) from exc
    return result, counts


def _live_values(ctx: ReviewContext, f: QueueFilter, result: QueuePage, counts: dict[str, Any]) -> dict[str, Any]:
    """What the queue's live part (counts, rows, pager) is rendered from, on the page and when polled."""
    qs = f.query_string(ctx.timezone)
    base = dict(_params(qs))

    def link(**changes: Any) -> str:
        params = {**base, **{k: v for k, v in changes.items()}}
        if result.per_page != PAGE_SIZE:
            params.setdefault("per_page", result.per_page)
        return "/queue?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})

    thumbs = {i.id: evidence_urls(ctx, i.id).get("snapshot") for i in result.items}
    version = hashlib.sha256(json.dumps(
        [result.total, result.page, counts, [(i.id, i.status, i.state, i.last_event_at) for i in result.items]],
        sort_keys=True).encode()).hexdigest()[:16]
    rows_qs = urlencode({**base, "page": result.page, "per_page": result.per_page})
    return {"page": result, "items": result.items, "counts": counts, "thumbs": thumbs, "qs": qs, "link": link,
            "version": version, "rows_url": f"/queue/rows?{rows_qs}", "f": f}


def _params(qs: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(qs)


@router.get("/queue")
def queue_view(request: Request, ctx: Ctx, camera: str | None = None, grid_cell: str | None = None,
               type: str | None = None, status: str | None = None, since: str | None = None,
               until: str | None = None, page: int = 1, per_page: int = PAGE_SIZE) -> Response:
    f = queue_filter(ctx, camera, grid_cell, type, status, since, until)
    result, counts = _page_of(ctx, f, page, per_page)
    with ctx.db.transaction() as s:
        choices = distinct_values(s)
    return render(request, "queue.html", choices=choices, statuses=STATUSES, since=since or "", until=until or "",
                  poll_ms=POLL_MS, **_live_values(ctx, f, result, counts))


@router.get("/queue/rows")
def queue_rows(request: Request, ctx: Ctx, camera: str | None = None, grid_cell: str | None = None,
               type: str | None = None, status: str | None = None, since: str | None = None,
               until: str | None = None, page: int = 1, per_page: int = PAGE_SIZE) -> Response:
    """The queue's live part alone (counts, rows, pager), polled by review.js every :data:`POLL_MS`."""
    f = queue_filter(ctx, camera, grid_cell, type, status, since, until)
    result, counts = _page_of(ctx, f, page, per_page)
    response = render(request, "_queue_live.html", **_live_values(ctx, f, result, counts))
    response.headers["Cache-Control"] = "no-store"
    return response


def incident_values(ctx: ReviewContext, incident_id: str, f: QueueFilter) -> dict[str, Any] | None:
    """Everything the incident page shows; None when there is no such incident."""
    with ctx.db.transaction() as s:
        item = get_item(s, incident_id)
        if item is None:
            return None
        prev_id, next_id = neighbours(s, f, incident_id)
        events = events_of(s, incident_id)
    manifest, altered = None, []
    try:
        manifest = ctx.store.read_manifest(incident_id)
        if manifest:
            altered = verify_manifest(ctx.store.incident_dir(incident_id), manifest)
    except EvidenceError as exc:
        log.warning("manifest unreadable: %s", exc)
    urls = evidence_urls(ctx, incident_id)
    try:
        ctx.store.resolve(f"{incident_id}/{BOXES}")
        urls["boxes"] = f"/evidence/{incident_id}/{BOXES}"
    except EvidenceError:
        pass
    signals = events[-1]["payload"].get("evidence", {}).get("signals", {}) if events else {}
    return {"item": item, "events": events, "manifest": manifest, "altered": altered,
            "manifest_text": json.dumps(manifest, indent=2, sort_keys=True) if manifest else None,
            "urls": urls, "prev_id": prev_id, "next_id": next_id, "qs": f.query_string(ctx.timezone),
            "signals": signals if isinstance(signals, dict) else {}}


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, ctx: Ctx, incident_id: str, camera: str | None = None,
                  grid_cell: str | None = None, type: str | None = None, status: str | None = None,
                  since: str | None = None, until: str | None = None) -> Response:
    f = queue_filter(ctx, camera, grid_cell, type, status, since, until)
    values = incident_values(ctx, incident_id, f)
    if values is None:
        return render(request, "missing.html", status=404, incident_id=incident_id)
    return render(request, "incident.html", error=None, reason="", **values)
