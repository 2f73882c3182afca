"""Login and logout. The login form is public; both POSTs check the CSRF token of the session the
login page handed out, and a successful login starts a fresh session (a new CSRF token)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from review.deps import Ctx, render, require_csrf, set_session_cookie
from review.security import COOKIE, new_session, verify_password
from storage import repository as repo

log = logging.getLogger("patrol.review")

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_page(request: Request, next: str = "/queue") -> Response:
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", dependencies=[Depends(require_csrf)])
def login(request: Request, ctx: Ctx, username: str = Form(...), password: str = Form(...),
          next: str = Form("/queue")) -> Response:
    with ctx.db.transaction() as s:
        op = repo.get_operator(s, username)
        stored = op.password_hash if op is not None else None
    if not verify_password(stored, password):
        log.warning("review login failed", extra={"operator": username[:64]})
        return render(request, "login.html", status=401, next=safe_next(next),
                      error="Wrong user name or password.")
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(ctx, response, new_session(username))  # a fresh token after login
    log.info("review login", extra={"operator": username})
    return response


@router.post("/logout", dependencies=[Depends(require_csrf)])
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def safe_next(target: str) -> str:
    """Only local paths: never an open redirect to another site."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    return target
