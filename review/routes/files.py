"""Evidence files, served only from the evidence store: every path goes through
:meth:`evidence.store.EvidenceStore.resolve`, which refuses anything outside it."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

from evidence.errors import EvidenceError, UnsafePathError
from review.deps import Ctx

log = logging.getLogger("patrol.review")

router = APIRouter(include_in_schema=False)


@router.get("/evidence/{path:path}")
def evidence_file(ctx: Ctx, path: str) -> Response:
    try:
        file = ctx.store.resolve(path)
    except UnsafePathError as exc:
        log.warning("refused evidence path", extra={"path": path[:200]})
        raise HTTPException(400, "path refused: outside the evidence store") from exc
    except EvidenceError as exc:
        raise HTTPException(404, "no such evidence file") from exc
    return FileResponse(file, headers={"Cache-Control": "private, max-age=3600",
                                       "X-Content-Type-Options": "nosniff"})
