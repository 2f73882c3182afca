"""The annotated snapshot: the frame the rule fired on, with what made it fire drawn on it.

Drawn: the zone polygon, every box that counted with its label, score and track id, and a header
with the camera id, the incident type and the time (UTC and the site's zone when given). The clean
frame is written next to it, untouched, so nothing drawn can hide what was there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import numpy.typing as npt

from core.events import EvidenceBox
from evidence.errors import EvidenceError

ZONE_COLOUR = (0, 200, 255)  # BGR amber
BOX_COLOUR = (0, 0, 255)  # BGR red
TEXT_COLOUR = (255, 255, 255)


def format_time(unix_time: float, timezone: str | None = None) -> str:
    when = datetime.fromtimestamp(unix_time, tz=UTC)
    if timezone:
        local = when.astimezone(ZoneInfo(timezone))
        return local.strftime("%Y-%m-%d %H:%M:%S %Z")
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _label(img: npt.NDArray[np.uint8], text: str, x: int, y: int, colour: tuple[int, int, int],
           scale: float) -> None:
    thick = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    y = max(y, h + base + 2)
    cv2.rectangle(img, (x, y - h - base - 2), (x + w + 4, y), colour, -1)
    cv2.putText(img, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR, thick,
                cv2.LINE_AA)


def draw_snapshot(image: npt.NDArray[np.uint8], *, camera_id: str, when: float, title: str,
                  boxes: Sequence[EvidenceBox] = (),
                  polygon: Sequence[tuple[float, float]] | None = None,
                  timezone: str | None = None) -> npt.NDArray[np.uint8]:
    """Return an annotated copy of ``image`` (BGR uint8); ``polygon`` is normalised (0..1)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise EvidenceError(f"snapshot of camera {camera_id!r}: expected a BGR uint8 HxWx3 image, "
                            f"got {image.dtype} {image.shape}")
    out = image.copy()
    h, w = out.shape[:2]
    scale = max(0.4, min(w, h) / 900)
    if polygon:
        pts = np.array([[round(x * w), round(y * h)] for x, y in polygon], np.int32)
        overlay = out.copy()
        cv2.fillPoly(overlay, [pts], ZONE_COLOUR)
        cv2.addWeighted(overlay, 0.2, out, 0.8, 0, dst=out)
        cv2.polylines(out, [pts], True, ZONE_COLOUR, max(1, round(scale * 3)), cv2.LINE_AA)
    for box in boxes:
        x1, y1, x2, y2 = (round(v) for v in box.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, max(1, round(scale * 3)))
        text = f"{box.label} {box.score:.2f}" + (f" #{box.track_id}" if box.track_id is not None else "")
        _label(out, text, x1, y1 - 2, BOX_COLOUR, scale * 0.8)
    _label(out, f"{camera_id}  {title}  {format_time(when, timezone)}", 0, 0, (40, 40, 40), scale)
    return out


def write_jpeg(path: Path, image: npt.NDArray[np.uint8], quality: int = 90) -> None:
    """Write ``image`` as JPEG atomically (temp name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EvidenceError(f"{path}: JPEG encoding failed")
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_bytes(buf.tobytes())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EvidenceError(f"{path}: cannot write snapshot: {exc.strerror or exc}") from exc
