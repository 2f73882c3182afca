"""What every router of the review page shares: the context, the session, CSRF, rendering.

The app built by :func:`review.app.create_app` keeps its :class:`ReviewContext` and its templates
in ``app.state``; routers reach them through the dependencies here (:data:`Ctx`), never through
globals, so two apps (two tests) in one process do not share anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from prometheus_client.registry import CollectorRegistry

from evidence.errors import EvidenceError
from evidence.store import EvidenceStore
from review import i18n
from review.queue import STATUSES, QueueFilter, parse_local_time
from review.security import COOKIE, Session, SessionCodec, csrf_ok, new_session
from storage.db import Database


@dataclass
class ReviewContext:
    """What the app needs, built once by :func:`review.server.build_context` or by a test."""

    db: Database
    store: EvidenceStore
    codec: SessionCodec
    topic_prefix: str = "patrol/v1"
    timezone: str = "UTC"
    site_name: str = "Bright Patrol"
    wake_outbox: Callable[[], None] = lambda: None
    registries: list[CollectorRegistry] = field(default_factory=list)
    metrics_token: str | None = None
    secure_cookies: bool = False
    clock: Callable[[], float] = time.time
    probes: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    """Readiness checks beyond the database for ``/readyz`` (name -> None when fine, else why not)."""
    language: str = i18n.DEFAULT_LANGUAGE
    """The site's page language (``review.language``); a user switches with ``?lang=`` (a cookie keeps it)."""
    site_file: str | None = None
    """The site YAML the camera pages edit (``patrol review serve --config FILE``); None: read-only."""
    snapshots_dir: str | None = None
    """Where a running pipeline writes ``<camera>/latest.jpg`` for the camera pages (None: none)."""


def context(request: Request) -> ReviewContext:
    ctx: ReviewContext = request.app.state.review
    return ctx


Ctx = Annotated[ReviewContext, Depends(context)]
"""A route parameter ``ctx: Ctx`` receives the app's :class:`ReviewContext`."""


def session_of(request: Request) -> Session | None:
    """The session the authentication middleware decoded from the cookie (None: no valid cookie)."""
    return getattr(request.state, "session", None)


def operator_of(request: Request) -> str:
    session = session_of(request)
    if session is None or session.user is None:  # the middleware makes this unreachable
        raise HTTPException(401, "login required")
    return session.user


def require_role(*roles: str) -> Callable[[Request], None]:
    """A dependency: the logged-in session's role is one of ``roles`` (admin always passes); anyone
    else gets 403 (an HTML request a page in their language, :mod:`review.error_pages`)."""
    def check(request: Request) -> None:
        session = session_of(request)
        if session is None or not session.has_role(*roles):
            raise HTTPException(403, "Your role may not open this page.")
    return check


async def require_csrf(request: Request) -> None:
    """Every POST: the session's CSRF token, from the form field or the X-CSRF-Token header."""
    token = request.headers.get("x-csrf-token")
    if token is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        token = value if isinstance(value, str) else None
    if not csrf_ok(session_of(request), token):
        raise HTTPException(403, "CSRF token missing or wrong; reload the page")


def set_session_cookie(ctx: ReviewContext, response: Response, session: Session) -> None:
    response.set_cookie(COOKIE, ctx.codec.dumps(session), max_age=ctx.codec.max_age_s, httponly=True,
                        samesite="lax", secure=ctx.secure_cookies, path="/")


def render(request: Request, name: str, status: int = 200, **values: Any) -> Response:
    """A page from ``review/templates`` with the session's CSRF token, user, site and time zone; a
    visitor without a session gets one (so the login form has a token to send)."""
    ctx = context(request)
    language = language_of(request)
    templates: Jinja2Templates = request.app.state.templates_by_language[language]
    session = session_of(request)
    fresh = session is None
    if session is None:
        session = new_session()
    response = templates.TemplateResponse(request, name, {
        "csrf": session.csrf, "user": session.user, "site": ctx.site_name, "tz": ctx.timezone, **values,
    }, status_code=status)
    if fresh:
        set_session_cookie(ctx, response, session)
    if request.query_params.get("lang") == language and request.cookies.get(i18n.LANG_COOKIE) != language:
        response.set_cookie(i18n.LANG_COOKIE, language, max_age=365 * 86_400, httponly=True, samesite="lax",
                            secure=ctx.secure_cookies, path="/")
    return response


def language_of(request: Request) -> str:
    """The page language of this request (see :func:`review.i18n.request_language`)."""
    return i18n.request_language(request, context(request).language)


def translate(request: Request) -> Callable[[str], str]:
    """``gettext`` in the request's language, for messages built in Python."""
    return i18n.gettext(language_of(request))


def queue_filter(ctx: ReviewContext, camera: str | None, grid_cell: str | None, type_: str | None,
                 status: str | None, since: str | None, until: str | None) -> QueueFilter:
    """The queue filter from query parameters; a bad value is a 422 naming the parameter."""
    if status and status not in STATUSES:
        raise i18n.UserError(422, "status must be one of %(choices)s", choices=", ".join(STATUSES))
    times = {}
    for name, text in (("since", since), ("until", until)):
        try:
            times[name] = parse_local_time(text, ctx.timezone, name)
        except ValueError as exc:
            raise i18n.UserError(422, "%(field)s: expected a date and time like 2026-11-26T18:30, got %(text)r",
                                 field=name, text=text) from exc
    return QueueFilter(camera or None, grid_cell or None, type_ or None, status or "unreviewed",
                       times["since"], times["until"])


def evidence_urls(ctx: ReviewContext, incident_id: str) -> dict[str, str]:
    """URLs of the incident's evidence files that are present in the store."""
    try:
        links = ctx.store.links(incident_id)
    except EvidenceError:
        return {}
    out = {}
    for kind, rel in links.items():
        try:
            ctx.store.resolve(rel)
        except EvidenceError:
            continue
        out[kind] = "/evidence/" + rel
    return out
