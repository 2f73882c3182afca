"""Login and logout. The login form is public; both POSTs check the CSRF token of the session the
login page handed out, and a successful login starts a fresh server-side session (a new CSRF token,
a new opaque cookie token, :mod:`review.sessions`); logout revokes it in the database.

Failed logins are throttled per account and per address (:class:`review.security.ThrottlePolicy`):
while a key must wait, a login is answered 429 with ``Retry-After`` and the password is not checked.
"""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from review.deps import Ctx, render, require_csrf, session_of, translate
from review.security import COOKIE, new_session, verify_password
from review.sessions import end_session, login_wait_s, record_login_failure, start_session
from storage import repository as repo

log = logging.getLogger("patrol.review")

router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_page(request: Request, next: str = "/queue") -> Response:
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", dependencies=[Depends(require_csrf)])
def login(request: Request, ctx: Ctx, username: str = Form(...), password: str = Form(...),
          next: str = Form("/queue")) -> Response:
    _ = translate(request)
    now = ctx.clock()
    address = request.client.host if request.client else None
    wait = login_wait_s(ctx.db, username, address, now)
    if wait > 0:
        log.warning("review login refused: throttled", extra={"operator": username[:64]})
        response = render(request, "login.html", status=429, next=safe_next(next),
                          error=_("Too many failed logins. Try again in %(s)d s.") % {"s": math.ceil(wait)})
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    with ctx.db.transaction() as s:
        op = repo.get_operator(s, username)
        stored = op.password_hash if op is not None and not op.disabled else None
    started = None
    if verify_password(stored, password):
        started = start_session(ctx.db, username, now=now, max_age_s=ctx.codec.max_age_s, address=address,
                                csrf=new_session().csrf)  # a fresh token after login
    if started is None:
        wait = record_login_failure(ctx.db, username, address, now)
        log.warning("review login failed", extra={"operator": username[:64]})
        error = _("Wrong user name or password.")
        if wait > 0:
            error += " " + _("Wait %(s)d s before the next try.") % {"s": math.ceil(wait)}
        response = render(request, "login.html", status=401, next=safe_next(next), error=error)
        if wait > 0:
            response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(COOKIE, ctx.codec.dumps_token(started.token), max_age=ctx.codec.max_age_s,
                        httponly=True, samesite="lax", secure=ctx.secure_cookies, path="/")
    log.info("review login", extra={"operator": username})
    return response


@router.post("/logout", dependencies=[Depends(require_csrf)])
def logout(request: Request, ctx: Ctx) -> Response:
    end_session(ctx.db, session_of(request), ctx.clock())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def safe_next(target: str) -> str:
    """Only local paths: never an open redirect to another site."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    return target
