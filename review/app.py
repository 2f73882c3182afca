"""The operators' review page: a FastAPI app with server-rendered pages and a small JSON API.

Pages: ``/login``, ``/queue`` (filters: camera, grid cell, type, review status, time), ``/incidents/{id}``
(clip player, annotated snapshot, clean frame, manifest, events, verdicts; confirm / reject).
Files: ``/evidence/{incident}/{file}``, only from the evidence store, paths checked by
:meth:`evidence.store.EvidenceStore.resolve`. API: ``/api/...`` described by ``/openapi.json``.
Metrics: ``/metrics`` (Prometheus text).

Every route except ``/login`` and ``/static/`` needs a logged-in session (one middleware decides, so
no route can forget); ``/metrics`` also accepts ``Authorization: Bearer <metrics token>`` when one
is configured. Every POST route depends on :func:`require_csrf`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel, Field

from evidence.errors import EvidenceError, UnsafePathError
from evidence.manifest import verify_manifest
from evidence.store import EvidenceStore
from review import metrics as review_metrics
from review.queue import (
    STATUSES,
    QueueFilter,
    QueueItem,
    distinct_values,
    events_of,
    get_item,
    list_queue,
    neighbours,
    parse_local_time,
)
from review.security import COOKIE, Session, SessionCodec, csrf_ok, new_session, verify_password
from review.verdicts import VerdictRejected, record_verdict
from storage import repository as repo
from storage.db import Database
from storage.errors import NotFound

log = logging.getLogger("patrol.review")

HERE = Path(__file__).parent
PUBLIC_PATHS = frozenset({"/login"})
PUBLIC_PREFIXES = ("/static/",)
MACHINE_PREFIXES = ("/api/", "/evidence/", "/metrics", "/openapi.json")


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


class VerdictIn(BaseModel):
    verdict: Literal["confirm", "reject"]
    reason: str = Field(default="", max_length=500)


class VerdictOut(BaseModel):
    verdict_id: int
    incident_id: str
    verdict: str
    topic: str


class IncidentOut(BaseModel):
    id: str
    type: str
    camera_id: str
    grid_cell: str
    zone_id: str | None
    severity: str
    state: str
    started_at: float
    last_event_at: float
    review_status: str
    verdicts: list[dict[str, Any]]
    evidence: dict[str, str] = Field(default_factory=dict, description="URLs of the evidence files present.")


def session_of(request: Request) -> Session | None:
    return getattr(request.state, "session", None)


def operator_of(request: Request) -> str:
    session = session_of(request)
    if session is None or session.user is None:  # the middleware makes this unreachable
        raise HTTPException(401, "login required")
    return session.user


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


def create_app(ctx: ReviewContext) -> FastAPI:
    app = FastAPI(title="Bright Patrol review", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Operators' review of incidents: queue, evidence, verdicts.")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = lambda ts: _fmt_time(ts, ctx.timezone)
    templates.env.filters["urlq"] = lambda s: quote(str(s), safe="")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self'; media-src 'self'; "
                                    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        return response

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
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

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        session = session_of(request)
        fresh = session is None
        if session is None:
            session = new_session()
        response = templates.TemplateResponse(request, name, {
            "csrf": session.csrf, "user": session.user, "site": ctx.site_name, "tz": ctx.timezone, **context,
        }, status_code=status)
        if fresh:
            _set_cookie(response, session)
        return response

    def _set_cookie(response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, ctx.codec.dumps(session), max_age=ctx.codec.max_age_s, httponly=True,
                            samesite="lax", secure=ctx.secure_cookies, path="/")

    def queue_filter(camera: str | None, grid_cell: str | None, type_: str | None, status: str | None,
                     since: str | None, until: str | None) -> QueueFilter:
        if status and status not in STATUSES:
            raise HTTPException(422, f"status must be one of {', '.join(STATUSES)}")
        try:
            return QueueFilter(camera or None, grid_cell or None, type_ or None, status or "unreviewed",
                               parse_local_time(since, ctx.timezone, "since"),
                               parse_local_time(until, ctx.timezone, "until"))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc

    def evidence_urls(incident_id: str) -> dict[str, str]:
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

    # ---------------------------------------------------------------- login / logout
    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/queue") -> Response:
        return render(request, "login.html", next=_safe_next(next), error=None)

    @app.post("/login", include_in_schema=False, dependencies=[Depends(require_csrf)])
    def login(request: Request, username: str = Form(...), password: str = Form(...),
              next: str = Form("/queue")) -> Response:
        with ctx.db.transaction() as s:
            op = repo.get_operator(s, username)
            stored = op.password_hash if op is not None else None
        if not verify_password(stored, password):
            log.warning("review login failed", extra={"operator": username[:64]})
            return render(request, "login.html", status=401, next=_safe_next(next),
                          error="Wrong user name or password.")
        response = RedirectResponse(_safe_next(next), status_code=303)
        _set_cookie(response, new_session(username))  # a fresh token after login
        log.info("review login", extra={"operator": username})
        return response

    @app.post("/logout", include_in_schema=False, dependencies=[Depends(require_csrf)])
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # ---------------------------------------------------------------- pages
    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/queue", status_code=303)

    @app.get("/queue", include_in_schema=False)
    def queue_page(request: Request, camera: str | None = None, grid_cell: str | None = None,
                   type: str | None = None, status: str | None = None, since: str | None = None,
                   until: str | None = None) -> Response:
        f = queue_filter(camera, grid_cell, type, status, since, until)
        with ctx.db.transaction() as s:
            items = list_queue(s, f)
            choices = distinct_values(s)
        return render(request, "queue.html", items=items, f=f, qs=f.query_string(ctx.timezone),
                      choices=choices, statuses=STATUSES, since=since or "", until=until or "")

    @app.get("/incidents/{incident_id}", include_in_schema=False)
    def incident_page(request: Request, incident_id: str, camera: str | None = None,
                      grid_cell: str | None = None, type: str | None = None, status: str | None = None,
                      since: str | None = None, until: str | None = None) -> Response:
        f = queue_filter(camera, grid_cell, type, status, since, until)
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
                      urls=evidence_urls(incident_id), prev_id=prev_id, next_id=next_id,
                      qs=f.query_string(ctx.timezone))

    @app.post("/incidents/{incident_id}/verdict", include_in_schema=False, dependencies=[Depends(require_csrf)])
    def verdict_form(request: Request, incident_id: str, verdict: str = Form(...), reason: str = Form(""),
                     qs: str = Form("")) -> Response:
        try:
            record_verdict(ctx.db, incident_id, operator_of(request), verdict, reason, ctx.topic_prefix,
                           ctx.clock())
        except VerdictRejected as exc:
            raise HTTPException(422, str(exc)) from exc
        except NotFound as exc:
            raise HTTPException(404, f"no incident {incident_id!r}") from exc
        ctx.wake_outbox()
        qs = _safe_qs(qs)
        # next in the same queue: the decided incident has left an "unreviewed" queue, so ask again
        f = QueueFilter(status="unreviewed") if not qs else None
        with ctx.db.transaction() as s:
            items = list_queue(s, f or _filter_from_qs(qs, ctx.timezone))
        following = _after(items, incident_id)
        target = f"/incidents/{quote(following, safe='')}" if following else "/queue"
        return RedirectResponse(target + (f"?{qs}" if qs else ""), status_code=303)

    @app.get("/evidence/{path:path}", include_in_schema=False)
    def evidence_file(path: str) -> Response:
        try:
            file = ctx.store.resolve(path)
        except UnsafePathError as exc:
            log.warning("refused evidence path", extra={"path": path[:200]})
            raise HTTPException(400, "path refused: outside the evidence store") from exc
        except EvidenceError as exc:
            raise HTTPException(404, "no such evidence file") from exc
        return FileResponse(file, headers={"Cache-Control": "private, max-age=3600",
                                           "X-Content-Type-Options": "nosniff"})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body = review_metrics.render([review_metrics.make_registry(ctx.db), *ctx.registries])
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # ---------------------------------------------------------------- JSON API
    @app.get("/api/me", tags=["session"])
    def api_me(request: Request) -> dict[str, str]:
        """The logged-in operator and the CSRF token POST requests must send as X-CSRF-Token."""
        session = session_of(request)
        assert session is not None
        return {"operator": operator_of(request), "csrf_token": session.csrf}

    @app.get("/api/incidents", tags=["incidents"], response_model=list[IncidentOut])
    def api_incidents(camera: str | None = None, grid_cell: str | None = None, type: str | None = None,
                      status: str = "unreviewed", since: str | None = None,
                      until: str | None = None) -> list[IncidentOut]:
        """The review queue, newest first. ``status``: unreviewed, confirmed, rejected or all;
        ``since`` / ``until``: local date-time of the site, e.g. 2026-11-26T18:30."""
        f = queue_filter(camera, grid_cell, type, status, since, until)
        with ctx.db.transaction() as s:
            items = list_queue(s, f)
        return [_out(i, evidence_urls(i.id)) for i in items]

    @app.get("/api/incidents/{incident_id}", tags=["incidents"], response_model=IncidentOut)
    def api_incident(incident_id: str) -> IncidentOut:
        with ctx.db.transaction() as s:
            item = get_item(s, incident_id)
        if item is None:
            raise HTTPException(404, f"no incident {incident_id!r}")
        return _out(item, evidence_urls(incident_id))

    @app.post("/api/incidents/{incident_id}/verdict", tags=["incidents"], response_model=VerdictOut,
              dependencies=[Depends(require_csrf)])
    def api_verdict(request: Request, incident_id: str, body: VerdictIn) -> VerdictOut:
        """Confirm or reject (reason required). Needs the X-CSRF-Token header from /api/me."""
        try:
            rec = record_verdict(ctx.db, incident_id, operator_of(request), body.verdict, body.reason,
                                 ctx.topic_prefix, ctx.clock())
        except VerdictRejected as exc:
            raise HTTPException(422, str(exc)) from exc
        except NotFound as exc:
            raise HTTPException(404, f"no incident {incident_id!r}") from exc
        ctx.wake_outbox()
        return VerdictOut(verdict_id=rec.verdict_id, incident_id=incident_id, verdict=body.verdict,
                          topic=rec.topic)

    return app


def _out(item: QueueItem, urls: dict[str, str]) -> IncidentOut:
    return IncidentOut(**item.as_dict(), evidence=urls)


def _after(items: list[QueueItem], incident_id: str) -> str | None:
    ids = [i.id for i in items if i.id != incident_id]
    return ids[0] if ids else None


def _safe_next(target: str) -> str:
    """Only local paths: never an open redirect to another site."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    return target


def _safe_qs(qs: str) -> str:
    from urllib.parse import parse_qsl

    allowed = {"camera", "grid_cell", "type", "status", "since", "until"}
    return urlencode([(k, v) for k, v in parse_qsl(qs) if k in allowed and v])


def _filter_from_qs(qs: str, tz: str) -> QueueFilter:
    from urllib.parse import parse_qs

    p = {k: v[0] for k, v in parse_qs(qs).items()}
    status = p.get("status", "unreviewed")
    try:
        return QueueFilter(p.get("camera"), p.get("grid_cell"), p.get("type"),
                           status if status in STATUSES else "unreviewed",
                           parse_local_time(p.get("since"), tz, "since"), parse_local_time(p.get("until"), tz, "until"))
    except ValueError:
        return QueueFilter()


def _fmt_time(ts: float | None, tz: str) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")
