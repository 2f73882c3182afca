"""``/metrics``: the review database's figures and every registry the context carries, as
Prometheus text (a logged-in session or the metrics bearer token; see :mod:`review.middleware`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from review import metrics as review_metrics
from review.deps import Ctx

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(ctx: Ctx) -> Response:
    body = review_metrics.render([review_metrics.make_registry(ctx.db), *ctx.registries])
    return Response(body, media_type=CONTENT_TYPE_LATEST)
