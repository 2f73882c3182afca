"""``/healthz`` (alive) and ``/readyz`` (ready to serve) of the review page, for a load balancer or
an orchestrator: no login needed, no session looked up (:mod:`review.middleware` lets them through
before it touches the database).

``/readyz`` checks the database (:meth:`storage.db.Database.ping`: it answers and its schema is at
this code's head) and every probe in :attr:`review.deps.ReviewContext.probes` (the server adds its
broker link's); 200 with ``{"ready": true, "checks": {...}}``, else 503 with each failing check's
reason (:func:`pipeline.probes.check_readiness`).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pipeline.probes import check_readiness
from review.deps import Ctx

router = APIRouter(include_in_schema=False)

PATHS = frozenset({"/healthz", "/readyz"})


@router.get("/healthz")
def healthz() -> JSONResponse:
    return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz")
def readyz(ctx: Ctx) -> JSONResponse:
    result = check_readiness({"database": ctx.db.ping, **ctx.probes})
    return JSONResponse(result.body(), status_code=200 if result.ready else 503,
                        headers={"Cache-Control": "no-store"})
