"""Each camera's latest analysed frame as ``<dir>/<camera>/latest.jpg``, on a slow timer, for the
engineers' camera page (review/routes/cameras.py shows it under the zones).

Wrapped around the worker's analyzers (:func:`with_snapshots`): every analysed frame is offered, and
one per ``interval_s`` of frame wall time is written (JPEG, quality 85: about 60 KB for 1080p) to a
temporary file beside the target and renamed over it, so a reader never sees half a picture. A
failing write is logged once per camera and never costs the analysis.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2

from camera_config.schema import Camera, SiteConfig
from core.types import Detections, Frame

log = logging.getLogger("patrol.snapshots")

DEFAULT_INTERVAL_S = 10.0
"""A picture for placing zones need not be fresh: one write per 10 s per camera costs ~1 ms of JPEG
encoding per camera every 10 s (1080p on one core), nothing a capacity figure notices."""
LATEST = "latest.jpg"


class SnapshotWriter:
    def __init__(self, directory: str | Path, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if not interval_s > 0:
            raise ValueError(f"SnapshotWriter: interval_s must be > 0, got {interval_s}")
        self.directory = Path(directory)
        self.interval_s = interval_s
        self.written = 0
        self._last: dict[str, float] = {}
        self._failed: set[str] = set()

    def path(self, camera_id: str) -> Path:
        return self.directory / camera_id / LATEST

    def offer(self, frame: Frame) -> bool:
        """Write ``frame`` when its camera's last picture is ``interval_s`` old (by frame wall time);
        True when written."""
        last = self._last.get(frame.camera_id)
        if last is not None and frame.wall_time - last < self.interval_s:
            return False
        self._last[frame.camera_id] = frame.wall_time
        try:
            self._write(frame)
        except (OSError, cv2.error) as exc:
            if frame.camera_id not in self._failed:
                log.error("camera %s: latest frame not written to %s: %s", frame.camera_id,
                          self.path(frame.camera_id), exc)
                self._failed.add(frame.camera_id)
            return False
        self._failed.discard(frame.camera_id)
        self.written += 1
        return True

    def _write(self, frame: Frame) -> None:
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise OSError("JPEG encoding failed")
        target = self.path(frame.camera_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".latest-", suffix=".jpg", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.tobytes())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class SnapshotAnalyzer:
    """An analyzer that offers each frame to the writer, then analyses it as the inner one does."""

    def __init__(self, inner: Any, writer: SnapshotWriter) -> None:
        self.inner = inner
        self.writer = writer

    def process(self, frame: Frame, detections: Detections) -> list[Any]:
        self.writer.offer(frame)
        events: list[Any] = self.inner.process(frame, detections)
        return events

    def __getattr__(self, name: str) -> Any:  # the inner analyzer's report, lifecycle, ... as they are
        return getattr(self.inner, name)


def with_snapshots(factory: Callable[[Camera, SiteConfig], Any],
                   writer: SnapshotWriter) -> Callable[[Camera, SiteConfig], SnapshotAnalyzer]:
    def make(camera: Camera, site: SiteConfig) -> SnapshotAnalyzer:
        return SnapshotAnalyzer(factory(camera, site), writer)
    return make
