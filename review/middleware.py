"""The review page's two HTTP middlewares: security headers on every response, and the login gate.

The gate is the one place that decides who may see what: every path except ``/login`` and
``/static/`` needs a logged-in session, so no route can forget; ``/metrics`` also accepts
``Authorization: Bearer <metrics token>`` when one is configured. Machine paths (API, evidence
files, metrics, OpenAPI) and non-GET requests get 401; pages redirect to the login. The session is
looked up in the database on every request (:func:`review.sessions.session_from_cookie`), so a
revoked session (logout, operator deleted or disabled) is refused at once.

``Strict-Transport-Security`` is sent when ``review.secure_cookies`` is on (the page is served over
HTTPS): a browser then never falls back to plain HTTP for this host.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from review.deps import context
from review.security import COOKIE
from review.sessions import session_from_cookie

PUBLIC_PATHS = frozenset({"/login"})
PUBLIC_PREFIXES = ("/static/",)
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
"""Liveness and readiness (review/routes/health.py): public, and answered without a session look-up."""
MACHINE_PREFIXES = ("/api/", "/evidence/", "/metrics", "/openapi.json")

HSTS = "max-age=31536000; includeSubDomains"
"""One year, as browsers' preload lists ask."""

CallNext = Callable[[Request], Awaitable[Response]]


async def security_headers(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self'; media-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    if context(request).secure_cookies:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


async def authenticate(request: Request, call_next: CallNext) -> Response:
    ctx = context(request)
    path = request.url.path
    if path.startswith(PUBLIC_PREFIXES) or path in PROBE_PATHS:  # static files, probes: no database look-up
        request.state.session = None
        return await call_next(request)
    data = ctx.codec.loads(request.cookies.get(COOKIE))
    session = await run_in_threadpool(session_from_cookie, ctx.db, data, ctx.clock()) if data else None
    request.state.session = session
    if path in PUBLIC_PATHS:
        return await call_next(request)
    if path == "/metrics" and ctx.metrics_token and \
            request.headers.get("authorization", "") == f"Bearer {ctx.metrics_token}":
        return await call_next(request)
    if session is None or session.user is None:
        if path.startswith(MACHINE_PREFIXES) or request.method != "GET":
            return JSONResponse({"detail": "login required"}, status_code=401)
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
    return await call_next(request)
