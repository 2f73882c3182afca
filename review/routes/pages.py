"""The operators' pages: the queue with its filters and one incident with its evidence."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from evidence.errors import EvidenceError
from evidence.manifest import verify_manifest
from review.deps import Ctx, evidence_urls, queue_filter, render
from review.queue import STATUSES, distinct_values, events_of, get_item, list_queue, neighbours

log = logging.getLogger("patrol.review")

router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> Response:
    return RedirectResponse("/queue", status_code=303)


@router.get("/queue")
def queue_page(request: Request, ctx: Ctx, camera: str | None = None, grid_cell: str | None = None,
               type: str | None = None, status: str | None = None, since: str | None = None,
               until: str | None = None) -> Response:
    f = queue_filter(ctx, camera, grid_cell, type, status, since, until)
    with ctx.db.transaction() as s:
        items = list_queue(s, f)
        choices = distinct_values(s)
    return render(request, "queue.html", items=items, f=f, qs=f.query_string(ctx.timezone),
                  choices=choices, statuses=STATUSES, since=since or "", until=until or "")


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, ctx: Ctx, incident_id: str, camera: str | None = None,
                  grid_cell: str | None = None, type: str | None = None, status: str | None = None,
                  since: str | None = None, until: str | None = None) -> Response:
    f = queue_filter(ctx, camera, grid_cell, type, status, since, until)
    with ctx.db.transaction() as s:
        item = get_item(s, incident_id)
        if item is None:
            return render(request, "missing.html", status=404, incident_id=incident_id)
        prev_id, next_id = neighbours(list_queue(s, f), incident_id)
        events = events_of(s, incident_id)
    manifest, altered = None, []
    try:
        manifest = ctx.store.read_manifest(incident_id)
        if manifest:
            altered = verify_manifest(ctx.store.incident_dir(incident_id), manifest)
    except EvidenceError as exc:
        log.warning("manifest unreadable: %s", exc)
    return render(request, "incident.html", item=item, events=events, manifest=manifest, altered=altered,
                  manifest_text=json.dumps(manifest, indent=2, sort_keys=True) if manifest else None,
                  urls=evidence_urls(ctx, incident_id), prev_id=prev_id, next_id=next_id,
                  qs=f.query_string(ctx.timezone))
