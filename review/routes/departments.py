"""The departments' part of the loop: ``GET /department`` (the member's department's dispatched and
recently disposed tickets; an admin picks one with ``?department=``), ``GET /tickets/{id}`` (a ticket
with its timings and history) and ``POST /tickets/{id}/dispose`` (note; CSRF), which queues the
verification re-check. A member never sees another department's ticket: it answers 404 as if absent.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from review.deps import Ctx, ReviewContext, render, require_csrf, require_role, session_of
from review.loop import NotYours, department_ticket, dispose
from storage import repository as repo
from tickets.desk import ticket_view
from tickets.states import TransitionError

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api")
MEMBERS = Depends(require_role("department"))
RECENT_S = 7 * 86_400.0
"""Disposed (and verified, archived) tickets stay on the department view this long."""
MAX_NOTE = 1_000


def department_of(request: Request, chosen: str | None = None) -> str | None:
    """The member's department; an admin's choice (None: every department)."""
    session = session_of(request)
    assert session is not None  # require_role let only a logged-in member or admin through
    if session.role == "admin":
        return chosen or None
    if not session.department:
        raise HTTPException(403, "Your role may not open this page.")
    return session.department


def department_tickets(ctx: ReviewContext, department: str | None, now: float) -> dict[str, list[dict[str, Any]]]:
    with ctx.db.transaction() as s:
        rows = [t for t in repo.list_tickets(s, states=["dispatched", "disposed", "verified", "archived"],
                                             limit=1_000)
                if department is None or t.department == department]
        views = [ticket_view(s, t, now=now) for t in rows]
    return {"dispatched": [v for v in views if v["state"] == "dispatched"],
            "recent": [v for v in views if v["state"] != "dispatched" and v["updated_at"] >= now - RECENT_S]}


@router.get("/department", dependencies=[MEMBERS])
def department_page(request: Request, ctx: Ctx, department: str | None = None) -> Response:
    dept = department_of(request, department)
    lists = department_tickets(ctx, dept, ctx.clock())
    return render(request, "department.html", department=dept, dispatched=lists["dispatched"],
                  recent=lists["recent"])


@router.get("/tickets/{ticket_id}", dependencies=[MEMBERS])
def ticket_page(request: Request, ctx: Ctx, ticket_id: int) -> Response:
    try:
        department_ticket(ctx.db, ticket_id, department_of(request))
    except NotYours as exc:
        raise HTTPException(404, "No such ticket.") from exc
    with ctx.db.transaction() as s:
        view = ticket_view(s, repo.get_ticket(s, ticket_id), full=True, now=ctx.clock())
    return render(request, "department_ticket.html", t=view)


@api_router.get("/tickets/{ticket_id}", tags=["tickets"], dependencies=[MEMBERS])
def ticket_json(request: Request, ctx: Ctx, ticket_id: int) -> dict[str, Any]:
    """The ticket as ``patrol tickets show`` prints it (state, category code, timings, history)."""
    try:
        department_ticket(ctx.db, ticket_id, department_of(request))
    except NotYours as exc:
        raise HTTPException(404, "No such ticket.") from exc
    with ctx.db.transaction() as s:
        return ticket_view(s, repo.get_ticket(s, ticket_id), full=True, now=ctx.clock())


@router.post("/tickets/{ticket_id}/dispose", dependencies=[MEMBERS, Depends(require_csrf)])
def dispose_form(request: Request, ctx: Ctx, ticket_id: int, note: str = Form("")) -> Response:
    note = note.strip()
    if not note or len(note) > MAX_NOTE:
        raise HTTPException(422, "A disposal needs a note (1-1000 characters).")
    session = session_of(request)
    assert session is not None and session.user is not None
    try:
        dispose(ctx.db, ticket_id, department_of(request), member=session.user, note=note,
                topic_prefix=ctx.topic_prefix)
    except NotYours as exc:
        raise HTTPException(404, "No such ticket.") from exc
    except TransitionError as exc:
        raise HTTPException(409, "This ticket cannot be marked disposed now.") from exc
    ctx.wake_outbox()
    return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)


