"""The review page's two HTTP middlewares: security headers on every response, and the login gate.

The gate is the one place that decides who may see what: every path except ``/login`` and
``/static/`` needs a logged-in session, so no route can forget; ``/metrics`` also accepts
``Authorization: Bearer <metrics token>`` when one is configured. Machine paths (API, evidence
files, metrics, OpenAPI) and non-GET requests get 401; pages redirect to the login.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from review.deps import context
from review.security import COOKIE

PUBLIC_PATHS = frozenset({"/login"})
PUBLIC_PREFIXES = ("/static/",)
MACHINE_PREFIXES = ("/api/", "/evidence/", "/metrics", "/openapi.json")

CallNext = Callable[[Request], Awaitable[Response]]


async def security_headers(request: Request, call_next: CallNext) -> Response:
    response = await call_next(request)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self'; media-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    return response


async def authenticate(request: Request, call_next: CallNext) -> Response:
    ctx = context(request)
    session = ctx.codec.loads(request.cookies.get(COOKIE))
    request.state.session = session
    path = request.url.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
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
