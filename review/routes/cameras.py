"""The engineers' camera pages: each camera's picture with its zones drawn over it, and a zone editor.

- ``GET /cameras``: the site's cameras (engineer and admin roles, :func:`review.deps.require_role`).
- ``GET /cameras/{id}``: the camera's picture, its zones as an SVG over it (normalised coordinates
  as in the YAML) and the editor (``static/zones.js``): add, move and delete polygon points, add and
  delete zones, pick the zone type (every registered type, :func:`camera_config.schema.zone_types`),
  edit its parameters (fields and bounds from the type's own JSON Schema).
- ``GET /cameras/{id}/frame.jpg?t=SECONDS``: the picture. The latest frame a running pipeline wrote
  (``<snapshots_dir>/<camera>/latest.jpg``, when the app is given a snapshots folder and the file is
  there), else the frame at ``t`` (default 5 s) of the camera's source when that is a video file,
  decoded with PyAV.
- ``POST /cameras/{id}/zones`` (JSON ``{"zones": [...], "action": "check"|"save"|"patch"}``, CSRF
  header): the site file with the camera's zones replaced is validated exactly as ``patrol
  check-config`` validates it; problems come back per zone (422), else the unified diff; ``save``
  writes the file (backup ``FILE.bak-<UTC time>``, re-validated after writing, see
  :mod:`review.site_file`), ``patch`` answers the diff as a download.

The site file is the one the review server was started with (``ReviewContext.site_file``); without
one the pages show the zones but cannot save.
"""

from __future__ import annotations

import io
import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from camera_config.schema import SiteConfig, zone_schema, zone_types
from core.errors import ConfigError
from review.deps import Ctx, ReviewContext, render, require_csrf, require_role, session_of
from review.site_file import camera_index, read_site, replace_zones, validate_text, write_with_backup

log = logging.getLogger("patrol.review")

ENGINEERS = Depends(require_role("engineer"))
router = APIRouter(include_in_schema=False, dependencies=[ENGINEERS])

DEFAULT_FRAME_S = 5.0
"""The frame shown by default: 5 s in, past the black or smeared first frames some encoders write."""
EDITED_ELSEWHERE = ("id", "type", "polygon")
_ZONE_LOC = re.compile(r"\bcameras\[\d+\]\.zones\[(\d+)\](?:\.([A-Za-z_][\w.\[\]]*))?: (.*)$")


class ZonesIn(BaseModel):
    zones: list[dict[str, Any]] = Field(max_length=64)
    action: Literal["check", "save", "patch"] = "check"


def _site_path(ctx: ReviewContext) -> Path:
    if ctx.site_file is None:
        raise HTTPException(404, "The review server was started without a site file.")
    return Path(ctx.site_file)


def _load(ctx: ReviewContext) -> tuple[Path, str, dict[str, Any], SiteConfig]:
    path = _site_path(ctx)
    try:
        text, raw = read_site(path)
        config = validate_text(path, text)
    except ConfigError as exc:
        raise HTTPException(500, "The site file does not validate: " + "; ".join(exc.problems)) from exc
    except OSError as exc:
        raise HTTPException(500, f"The site file cannot be read: {exc.strerror or exc}") from exc
    return path, text, raw, config


def zone_fields(zone_type: str) -> list[dict[str, Any]]:
    """The parameters of one zone type for the editor, from its JSON Schema: name, kind (number,
    integer, boolean, enum, json), default, bounds and description."""
    schema = zone_schema(zone_type).model_json_schema()
    out = []
    for name, prop in schema.get("properties", {}).items():
        if name in EDITED_ELSEWHERE:
            continue
        kind = prop.get("type")
        if "enum" in prop:
            field: dict[str, Any] = {"kind": "enum", "options": prop["enum"]}
        elif kind in ("number", "integer", "boolean"):
            field = {"kind": kind}
        else:
            field = {"kind": "json"}
        for key in ("default", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "description"):
            if key in prop:
                field[key] = prop[key]
        out.append({"name": name, "required": name in schema.get("required", ()), **field})
    return out


def _source_file(ctx: ReviewContext, config: SiteConfig, camera_id: str) -> Path | None:
    """The camera's video file when its source is one (a stream has no file to take a frame from)."""
    url = config.camera(camera_id).url.get_secret_value()
    if "://" in url and not url.startswith("file://"):
        return None
    p = Path(url.removeprefix("file://"))
    for candidate in (p, Path(ctx.site_file or ".").parent / p):
        if candidate.is_file():
            return candidate.resolve()
    return None


@lru_cache(maxsize=32)
def _frame_jpeg(path: str, mtime: float, at_s: float) -> tuple[bytes, int, int]:
    """The first frame at or after ``at_s`` seconds of ``path`` as JPEG, with its width and height."""
    import av
    from PIL import Image

    with av.open(path) as container:
        stream = container.streams.video[0]
        if at_s > 0 and stream.time_base is not None:
            container.seek(int(at_s / stream.time_base), stream=stream, backward=True)
        image: Image.Image | None = None
        for frame in container.decode(stream):
            image = frame.to_image()
            if frame.time is None or frame.time >= at_s - 1e-3:
                break
    if image is None:
        raise ValueError(f"{path}: no video frame at {at_s} s")
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=88)
    return buf.getvalue(), image.width, image.height


def _picture(ctx: ReviewContext, config: SiteConfig, camera_id: str, at_s: float) -> tuple[bytes, str] | None:
    if ctx.snapshots_dir is not None:
        latest = Path(ctx.snapshots_dir) / camera_id / "latest.jpg"
        if latest.is_file():
            return latest.read_bytes(), "latest frame of the running pipeline"
    source = _source_file(ctx, config, camera_id)
    if source is None:
        return None
    data, _w, _h = _frame_jpeg(str(source), source.stat().st_mtime, at_s)
    return data, f"frame at {at_s:g} s of {source.name}"


def _picture_size(ctx: ReviewContext, config: SiteConfig, camera_id: str, at_s: float) -> tuple[int, int] | None:
    """Width and height of the picture the page will show (None: there is none)."""
    from PIL import Image

    try:
        picture = _picture(ctx, config, camera_id, at_s)
        if picture is None:
            return None
        with Image.open(io.BytesIO(picture[0])) as image:
            return image.width, image.height
    except (OSError, ValueError) as exc:
        log.warning("camera %s: no picture: %s", camera_id, exc)
        return None


def _camera_or_404(config: SiteConfig, camera_id: str) -> None:
    if camera_id not in {c.id for c in config.cameras}:
        raise HTTPException(404, "No such camera.")


@router.get("/cameras")
def cameras_page(request: Request, ctx: Ctx) -> Response:
    path, _text, _raw, config = _load(ctx)
    return render(request, "cameras.html", cameras=config.cameras, site_file=str(path))


@router.get("/cameras/{camera_id}")
def camera_page(request: Request, ctx: Ctx, camera_id: str, t: float = DEFAULT_FRAME_S) -> Response:
    path, _text, raw, config = _load(ctx)
    _camera_or_404(config, camera_id)
    if not 0 <= t <= 86_400:
        raise HTTPException(422, "t: seconds into the clip, 0 to 86400.")
    zones = raw["cameras"][camera_index(raw, camera_id)].get("zones") or []
    types = {name: zone_fields(name) for name in zone_types()}
    editor_size = _picture_size(ctx, config, camera_id, t)
    has_picture = editor_size is not None
    size = editor_size or (1280, 720)
    session = session_of(request)
    assert session is not None  # require_role let only a logged-in engineer through
    editor = {"camera": camera_id, "zones": zones, "types": types, "width": size[0], "height": size[1],
              "csrf": session.csrf, "save_url": f"/cameras/{camera_id}/zones"}
    editor_json = json.dumps(editor).replace("<", "\\u003c")  # safe inside <script type="application/json">
    return render(request, "camera.html", camera=config.camera(camera_id), site_file=str(path), t=t,
                  has_picture=has_picture, editor_json=editor_json, zone_count=len(zones))


@router.get("/cameras/{camera_id}/frame.jpg")
def camera_frame(ctx: Ctx, camera_id: str, t: float = DEFAULT_FRAME_S) -> Response:
    _path, _text, _raw, config = _load(ctx)
    _camera_or_404(config, camera_id)
    if not 0 <= t <= 86_400:
        raise HTTPException(422, "t: seconds into the clip, 0 to 86400.")
    try:
        picture = _picture(ctx, config, camera_id, t)
    except (OSError, ValueError) as exc:  # av.error.* derive from OSError / ValueError
        log.warning("camera %s: no picture: %s", camera_id, exc)
        raise HTTPException(404, "No picture of this camera.") from exc
    if picture is None:
        raise HTTPException(404, "No picture of this camera.")
    data, what = picture
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store", "X-Picture": what})


def zone_problems(problems: list[str]) -> tuple[dict[int, list[str]], list[str]]:
    """Split check-config's lines into the ones about a zone (by index) and the rest."""
    per_zone: dict[int, list[str]] = {}
    other = []
    for line in problems:
        m = _ZONE_LOC.search(line)
        if m is None:
            other.append(line)
            continue
        field = f"{m.group(2)}: " if m.group(2) else ""
        per_zone.setdefault(int(m.group(1)), []).append(field + m.group(3))
    return per_zone, other


@router.post("/cameras/{camera_id}/zones", dependencies=[Depends(require_csrf)])
def save_zones(request: Request, ctx: Ctx, camera_id: str, body: ZonesIn) -> Response:
    path, _text, _raw, config = _load(ctx)
    _camera_or_404(config, camera_id)
    change = replace_zones(path, camera_id, body.zones)
    try:
        validate_text(path, change.new_text)
    except ConfigError as exc:
        per_zone, other = zone_problems(exc.problems)
        return JSONResponse({"ok": False, "zones": {str(k): v for k, v in per_zone.items()}, "problems": other},
                            status_code=422)
    if body.action == "patch":
        return PlainTextResponse(change.diff, media_type="text/x-diff", headers={
            "Content-Disposition": f'attachment; filename="{path.stem}-{camera_id}-zones.patch"'})
    out: dict[str, Any] = {"ok": True, "diff": change.diff, "kept_comments": change.kept_comments,
                           "written": False}
    if body.action == "save" and change.diff:
        try:
            backup = write_with_backup(change)
        except ConfigError as exc:  # the written file failed: the backup is back in place
            return JSONResponse({"ok": False, "zones": {}, "problems": exc.problems}, status_code=500)
        user = session_of(request)
        log.info("camera %s: zones written to %s by %s (backup %s)", camera_id, path,
                 user.user if user else "?", backup.name)
        out.update(written=True, backup=str(backup))
    return JSONResponse(out)
