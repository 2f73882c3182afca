"""The operators' review page: a FastAPI app with server-rendered pages and a small JSON API.

Pages: ``/login``, ``/queue`` (filters: camera, grid cell, type, review status, time), ``/incidents/{id}``
(clip player, annotated snapshot, clean frame, manifest, events, verdicts; confirm / reject).
Files: ``/evidence/{incident}/{file}``, only from the evidence store, paths checked by
:meth:`evidence.store.EvidenceStore.resolve`. API: ``/api/...`` described by ``/openapi.json``.
Metrics: ``/metrics`` (Prometheus text).

:func:`create_app` only assembles: the routers (one per concern, :mod:`review.routes`), the
middlewares (:mod:`review.middleware`: every route except ``/login`` and ``/static/`` needs a
logged-in session, one middleware decides, so no route can forget), the templates and static files.
What the routers share is in :mod:`review.deps`; every POST route depends on
:func:`review.deps.require_csrf`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from review import error_pages, i18n
from review.deps import ReviewContext
from review.middleware import authenticate, security_headers
from review.routes import api, auth, files, metrics, pages, verdicts
from review.routes import cameras as camera_routes
from review.routes import departments as department_routes
from review.routes import health as health_routes
from review.routes import reports as report_routes

HERE = Path(__file__).parent
ROUTERS = (auth.router, pages.router, verdicts.router, files.router, metrics.router, api.router)

__all__ = ["ReviewContext", "create_app"]  # ReviewContext lives in review.deps; review.server takes it from here


def create_app(ctx: ReviewContext) -> FastAPI:
    app = FastAPI(title="Bright Patrol review", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json",
                  description="Operators' review of incidents: queue, evidence, verdicts.")
    app.state.review = ctx
    app.state.templates_by_language = {lang: templates(ctx.timezone, lang) for lang in i18n.LANGUAGES}
    app.state.templates = app.state.templates_by_language[ctx.language]  # the site's language
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    # the last added runs outermost: the headers go on every answer, the login gate's redirects and
    # 401s included, and the gate runs before any route
    app.middleware("http")(authenticate)
    app.middleware("http")(security_headers)
    for router in ROUTERS:
        app.include_router(router)
    error_pages.install(app)  # an error a person meets is a page in their language; the API keeps JSON
    app.include_router(health_routes.router)
    app.include_router(camera_routes.router)  # engineers: camera pictures and the zone editor
    app.include_router(department_routes.router)  # loop: the departments' view and ticket pages
    app.include_router(department_routes.api_router)  # loop: GET /api/tickets/{id}
    app.include_router(report_routes.router)  # loop: timings per department and grid cell
    return app


def templates(timezone: str, language: str = i18n.DEFAULT_LANGUAGE) -> Jinja2Templates:
    """The page templates in one language: ``_()`` / ``{% trans %}`` from its gettext catalog (Jinja2's
    i18n extension), ``when`` writes a time in the site's zone the language's way, ``label(table)``
    translates a code value (``{{ i.type | label("type") }}``, tables in :mod:`review.i18n`)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                             autoescape=jinja2.select_autoescape(), extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(i18n.translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = language
    env.globals["languages"] = i18n.LANGUAGE_NAMES
    env.filters["when"] = lambda ts: i18n.format_time(ts, timezone, language)
    env.filters["label"] = lambda value, table: i18n.label(language, table, value)
    env.filters["urlq"] = lambda s: quote(str(s), safe="")
    return Jinja2Templates(env=env)


def fmt_time(ts: float | None, tz: str) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")
