"""Tracked boxes per analysed frame, written beside an incident's clip as ``boxes.json``.

The review page draws them over the playing clip. Each camera keeps the boxes of its recent analysed
frames (:class:`BoxTrails`, as long as the packet ring keeps packets), so a clip's pre-roll has its
boxes too; an opened incident collects the frames up to its post-roll end. When its clip is written,
:meth:`IncidentBoxes.clip_written` fixes the clip's first packet time as time 0 and the file is
written; it is written once more when the analysis has passed the post-roll end (the clip may land
while the last analysed frames of the post-roll are still on their way).

File layout (version 1)::

    {"version": 1, "incident_id": ..., "camera_id": ..., "frame_size": [w, h], "clip_start_pts": s,
     "frames": [{"t": seconds since the clip's start, "pts": stream seconds,
                 "boxes": [{"track_id": 3, "class": "car", "score": 0.81, "xyxy": [x1, y1, x2, y2]}]}]}

``xyxy`` is in pixels of the decoded frame (``frame_size``); frames are in time order. Writes are
atomic (temporary name, then rename), so the page never reads half a file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.coco import COCO80
from core.types import Track
from evidence.errors import EvidenceError

log = logging.getLogger(__name__)

BOXES = "boxes.json"
BOXES_VERSION = 1


@dataclass(frozen=True, slots=True)
class FrameBoxes:
    pts: float
    boxes: tuple[dict[str, Any], ...]


def frame_boxes(pts: float, tracks: Sequence[Track]) -> FrameBoxes:
    """The tracks seen in one analysed frame, as the file stores them."""
    return FrameBoxes(pts, tuple(
        {"track_id": t.track_id, "class": COCO80[t.class_id] if 0 <= t.class_id < len(COCO80) else str(t.class_id),
         "score": round(float(t.score), 3), "xyxy": [round(float(v), 1) for v in t.xyxy]}
        for t in tracks))


@dataclass
class IncidentBoxes:
    """One incident's frames from the pre-roll to the post-roll end, and where they are written."""

    incident_id: str
    camera_id: str
    path: Path
    end_pts: float
    frame_size: tuple[int, int]
    frames: list[FrameBoxes] = field(default_factory=list)
    clip_start: float | None = None
    complete: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, frame: FrameBoxes) -> bool:
        """Add a frame seen after the opening; True once the analysis has passed the post-roll end."""
        with self._lock:
            if frame.pts > self.end_pts:
                self.complete = True
            else:
                self.frames.append(frame)
            ready = self.complete and self.clip_start is not None
        if ready:
            self.write()
        return self.complete

    def clip_written(self, start_pts: float, end_pts: float) -> None:
        """The clip landed: its first packet is time 0; frames after its end are dropped."""
        with self._lock:
            self.clip_start = start_pts
            self.end_pts = min(self.end_pts, end_pts)
        self.write()

    def document(self) -> dict[str, Any]:
        with self._lock:
            start = self.clip_start or 0.0
            frames = [{"t": round(f.pts - start, 3), "pts": f.pts, "boxes": list(f.boxes)}
                      for f in self.frames if start <= f.pts <= self.end_pts]
        return {"version": BOXES_VERSION, "incident_id": self.incident_id, "camera_id": self.camera_id,
                "frame_size": list(self.frame_size), "clip_start_pts": start, "frames": frames}

    def write(self) -> None:
        """Write (or rewrite) ``boxes.json`` atomically. Raises :class:`EvidenceError` naming the file."""
        tmp = self.path.with_name(f".{self.path.name}.part")
        try:
            tmp.write_text(json.dumps(self.document(), separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise EvidenceError(f"{self.path}: cannot write the clip's boxes: {exc.strerror or exc}") from exc


class BoxTrails:
    """Per camera: the boxes of the last ``keep_s`` seconds of analysed frames, and the incidents
    collecting theirs. :meth:`observe` is called from the analysis thread, the clip writer's thread
    calls :meth:`IncidentBoxes.clip_written`."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._recent: dict[str, deque[FrameBoxes]] = {}
        self._open: dict[str, list[IncidentBoxes]] = {}
        self._lock = threading.Lock()

    def observe(self, camera_id: str, pts: float, tracks: Sequence[Track]) -> None:
        frame = frame_boxes(pts, tracks)
        with self._lock:
            recent = self._recent.setdefault(camera_id, deque())
            if recent and pts < recent[-1].pts:  # the stream restarted: its clock is a new one
                recent.clear()
            recent.append(frame)
            while recent and recent[0].pts < pts - self.keep_s:
                recent.popleft()
            collecting = list(self._open.get(camera_id, ()))
        finished = []
        for inc in collecting:
            try:
                if inc.add(frame):
                    finished.append(inc)
            except EvidenceError as exc:
                log.error("%s", exc, extra={"camera": camera_id, "incident": inc.incident_id})
                finished.append(inc)
        if finished:
            with self._lock:
                self._open[camera_id] = [i for i in self._open.get(camera_id, ()) if i not in finished]

    def start(self, camera_id: str, incident_id: str, path: Path, from_pts: float, end_pts: float,
              frame_size: tuple[int, int]) -> IncidentBoxes:
        """An incident opened: it takes the frames kept since ``from_pts`` and collects up to ``end_pts``."""
        with self._lock:
            inc = IncidentBoxes(incident_id, camera_id, path, end_pts, frame_size,
                                [f for f in self._recent.get(camera_id, ()) if f.pts >= from_pts])
            self._open.setdefault(camera_id, []).append(inc)
        return inc
