"""Evidence for one incident: snapshot now, clip when the post-roll has passed, manifest each time.

The pipeline gives each camera's source the ring from :meth:`EvidenceRecorder.ring` (its
``on_packet`` is the source hook) and calls :meth:`EvidenceRecorder.record` when an incident opens.
``record`` draws and writes the snapshot and the clean frame, asks the ring for the clip (written
later on the clip writer's thread, never blocking analysis) and writes the manifest; the manifest is
rewritten with the clip's hash when the clip lands. It returns the store-relative links at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from core.events import IncidentEvent
from core.types import Frame, Track
from evidence.boxes import BOXES, BoxTrails
from evidence.clip import ClipResult, ClipWriter
from evidence.errors import EvidenceError
from evidence.manifest import ModelInfo, build_manifest, file_entries, write_manifest
from evidence.ring import PacketRing
from evidence.snapshot import draw_snapshot, write_jpeg
from evidence.store import CLIP, FRAME, MANIFEST, SNAPSHOT, EvidenceStore

log = logging.getLogger(__name__)

RING_HEADROOM_S = 10.0
"""Seconds kept beyond the pre-roll, so the keyframe before the pre-roll is still held (GOP <= 10 s)."""


class EvidenceRecorder:
    def __init__(self, store: EvidenceStore, writer: ClipWriter, *, pre_roll_s: float, post_roll_s: float,
                 config_version: str | None = None, model: ModelInfo | None = None,
                 timezone: str | None = None,
                 on_written: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.store = store
        self.writer = writer
        self.pre_roll_s = pre_roll_s
        self.post_roll_s = post_roll_s
        self.config_version = config_version
        self.model = model
        self.timezone = timezone
        self.on_written = on_written
        self._rings: dict[str, PacketRing] = {}
        self.boxes = BoxTrails(pre_roll_s + RING_HEADROOM_S)
        self._lock = threading.Lock()

    def ring(self, camera_id: str) -> PacketRing:
        with self._lock:
            if camera_id not in self._rings:
                self._rings[camera_id] = PacketRing(camera_id, self.pre_roll_s + RING_HEADROOM_S,
                                                    self.writer.submit)
            return self._rings[camera_id]

    def observe(self, camera_id: str, pts: float, tracks: Sequence[Track]) -> None:
        """Every analysed frame's tracks, for the boxes drawn over the clips (``boxes.json``)."""
        self.boxes.observe(camera_id, pts, tracks)

    def record(self, event: IncidentEvent, frame: Frame,
               polygon: Sequence[tuple[float, float]] | None = None,
               model: ModelInfo | None = None) -> dict[str, str]:
        """Write the evidence of an opened incident; returns store-relative links.

        ``model`` names the detector that saw it (default: the recorder's).
        """
        model = model or self.model
        folder = self.store.incident_dir(event.incident_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only or full store: the incident goes on without its evidence
            raise EvidenceError(f"{folder}: cannot create the evidence folder: {exc.strerror or exc}") from exc
        write_jpeg(folder / FRAME, frame.image)
        annotated = draw_snapshot(frame.image, camera_id=event.camera_id, when=event.event_at,
                                  title=f"{event.type} {event.zone_id or ''}".strip(),
                                  boxes=event.evidence.boxes, polygon=polygon, timezone=self.timezone)
        write_jpeg(folder / SNAPSHOT, annotated)
        at = event.stream_pts if event.stream_pts is not None else frame.pts
        clip_state: dict[str, Any] = {"status": "pending", "pre_roll_s": self.pre_roll_s,
                                      "post_roll_s": self.post_roll_s, "at_pts": at, "remuxed": True}

        def manifest(clip: dict[str, Any]) -> None:
            m = build_manifest(event, files=file_entries(folder, (CLIP, SNAPSHOT, FRAME)), model=model,
                               config_version=self.config_version, polygon=polygon, snapshot_pts=frame.pts,
                               clip=clip)
            write_manifest(folder / MANIFEST, m)
            if self.on_written is not None:
                self.on_written(event.incident_id, m)

        boxes = self.boxes.start(event.camera_id, event.incident_id, folder / BOXES,
                                 frame.pts - self.pre_roll_s - RING_HEADROOM_S, frame.pts + self.post_roll_s,
                                 (frame.width, frame.height))

        def clip_done(outcome: ClipResult | EvidenceError) -> None:
            if isinstance(outcome, ClipResult):
                try:
                    boxes.clip_written(outcome.start, outcome.end)
                except EvidenceError as exc:
                    log.error("%s", exc, extra={"camera": event.camera_id, "incident": event.incident_id})
                state = {**clip_state, "status": "written", "start_pts": outcome.start,
                         "end_pts": outcome.end, "duration_s": outcome.duration, "packets": outcome.packets,
                         "truncated": outcome.truncated}
            else:
                state = {**clip_state, "status": "failed", "error": str(outcome)}
            manifest(state)

        manifest(clip_state)  # before the request: a finished clip must overwrite "pending", not the reverse
        requested = self.ring(event.camera_id).request_clip(
            event.incident_id, at, self.pre_roll_s, self.post_roll_s, folder / CLIP, clip_done)
        if not requested:
            manifest({**clip_state, "status": "unavailable", "error": "no packets buffered for this camera"})
        return self.store.links(event.incident_id)
