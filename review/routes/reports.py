"""``GET /report?from=&to=`` (department members see their department, admins every one): the loop's
timings summed per department and grid cell over the tickets accepted in the period (site time zone;
default the last 7 days): count, median and mean time to dispatch, to dispose and to verify, overdue.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from review.deps import Ctx, ReviewContext, render, require_role
from review.i18n import UserError
from review.queue import parse_local_time
from review.routes.departments import department_of
from storage import repository as repo
from storage.models import Ticket
from tickets.desk import timings_of
from tickets.states import Timings

router = APIRouter(include_in_schema=False)
DEFAULT_PERIOD_S = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class ReportRow:
    department: str
    grid_cell: str
    count: int
    dispatch: tuple[float | None, float | None]
    """(median, mean) seconds from accepted to dispatched."""
    dispose: tuple[float | None, float | None]
    verify: tuple[float | None, float | None]
    overdue: int


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None]
    return (statistics.median(known), statistics.fmean(known)) if known else (None, None)


def summarise(rows: list[tuple[Ticket, Timings]]) -> list[ReportRow]:
    groups: dict[tuple[str, str], list[Timings]] = defaultdict(list)
    for ticket, timing in rows:
        groups[(ticket.department, ticket.grid_cell)].append(timing)
    return [ReportRow(dept, cell, len(ts), _stats([t.to_dispatch_s for t in ts]),
                      _stats([t.to_dispose_s for t in ts]), _stats([t.to_verify_s for t in ts]),
                      sum(t.overdue for t in ts))
            for (dept, cell), ts in sorted(groups.items())]


def report_rows(ctx: ReviewContext, department: str | None, since: float, until: float) -> list[ReportRow]:
    now = ctx.clock()
    with ctx.db.transaction() as s:
        tickets = [t for t in repo.list_tickets(s, limit=100_000)
                   if since <= t.created_at < until and (department is None or t.department == department)]
        return summarise([(t, timings_of(t, repo.ticket_history(s, t.id), now)) for t in tickets])


@router.get("/report", dependencies=[Depends(require_role("department"))])
def report_page(request: Request, ctx: Ctx, department: str | None = None) -> Response:
    dept = department_of(request, department)
    params = request.query_params
    times: dict[str, float | None] = {}
    for name in ("from", "to"):
        try:
            times[name] = parse_local_time(params.get(name) or None, ctx.timezone, name)
        except ValueError as exc:
            raise UserError(422, "%(field)s: expected a date and time like 2026-11-26T18:30, got %(text)r",
                            field=name, text=params.get(name)) from exc
    until = times["to"] if times["to"] is not None else ctx.clock()
    since = times["from"] if times["from"] is not None else until - DEFAULT_PERIOD_S
    return render(request, "report.html", department=dept, rows=report_rows(ctx, dept, since, until),
                  since=since, until=until, since_text=params.get("from", ""), until_text=params.get("to", ""))
