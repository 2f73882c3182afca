"""The confirm / reject form of the incident page; after a verdict the operator moves on to the next
incident of the same queue. A refused verdict (a rejection without a reason, say) re-renders the form
with the message in the operator's language and nothing recorded. :func:`record` is shared with the
JSON API's verdict route."""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from review.deps import Ctx, ReviewContext, language_of, operator_of, render, require_csrf
from review.i18n import UserError
from review.loop import apply_verdict
from review.queue import STATUSES, QueueFilter, QueueItem, list_queue, parse_local_time
from review.routes.pages import incident_values
from review.verdicts import VerdictRecord, VerdictRejected, record_verdict
from storage.errors import NotFound

router = APIRouter(include_in_schema=False)

QUEUE_PARAMS = frozenset({"camera", "grid_cell", "type", "status", "since", "until"})


def record(ctx: ReviewContext, request: Request, incident_id: str, verdict: str, reason: str) -> VerdictRecord:
    """Record the logged-in operator's verdict and wake the outbox; refusals become HTTP errors."""
    try:
        rec = record_verdict(ctx.db, incident_id, operator_of(request), verdict, reason, ctx.topic_prefix,
                             ctx.clock())
    except VerdictRejected as exc:
        raise UserError(422, exc.msgid, **exc.params) from exc
    except NotFound as exc:
        raise UserError(404, "No incident %(id)s.", id=incident_id) from exc
    apply_verdict(ctx.db, incident_id, verdict, operator=operator_of(request), reason=reason)  # loop: the ticket
    ctx.wake_outbox()
    return rec


@router.post("/incidents/{incident_id}/verdict", dependencies=[Depends(require_csrf)])
def verdict_form(request: Request, ctx: Ctx, incident_id: str, verdict: str = Form(...), reason: str = Form(""),
                 qs: str = Form("")) -> Response:
    qs = safe_qs(qs)
    try:
        record(ctx, request, incident_id, verdict, reason)
    except UserError as exc:
        if exc.status_code != 422:
            raise
        values = incident_values(ctx, incident_id, filter_from_qs(qs, ctx.timezone))
        if values is None:
            raise
        return render(request, "incident.html", status=422, error=exc.translated(language_of(request)),
                      reason=reason, **values)
    # next in the same queue: the decided incident has left an "unreviewed" queue, so ask again
    with ctx.db.transaction() as s:
        items = list_queue(s, filter_from_qs(qs, ctx.timezone) if qs else QueueFilter(status="unreviewed"), 2)
    following = after(items, incident_id)
    target = f"/incidents/{quote(following, safe='')}" if following else "/queue"
    return RedirectResponse(target + (f"?{qs}" if qs else ""), status_code=303)


def after(items: list[QueueItem], incident_id: str) -> str | None:
    ids = [i.id for i in items if i.id != incident_id]
    return ids[0] if ids else None


def safe_qs(qs: str) -> str:
    """The queue's own filter parameters from a posted query string, nothing else."""
    return urlencode([(k, v) for k, v in parse_qsl(qs) if k in QUEUE_PARAMS and v])


def filter_from_qs(qs: str, tz: str) -> QueueFilter:
    p = {k: v[0] for k, v in parse_qs(qs).items()}
    status = p.get("status", "unreviewed")
    try:
        return QueueFilter(p.get("camera"), p.get("grid_cell"), p.get("type"),
                           status if status in STATUSES else "unreviewed",
                           parse_local_time(p.get("since"), tz, "since"), parse_local_time(p.get("until"), tz, "until"))
    except ValueError:
        return QueueFilter()

