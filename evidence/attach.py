"""Attach evidence to the pipeline worker without touching it.

:class:`EvidenceAnalyzer` wraps a camera's analyzer: when an incident opens, it records the evidence
from the very frame the rule fired on and returns the event with its evidence links filled in, so
the links travel with the event into the database and onto MQTT. :func:`packet_listeners` gives each
camera's source the hook that feeds that camera's packet ring.

Usage with :class:`pipeline.worker.PatrolWorker`::

    recorder, writer = build_recorder(config)
    worker = PatrolWorker(config, analyzer_factory=with_evidence(camera_analyzer, recorder),
                          packet_listeners=packet_listeners(recorder))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from camera_config.schema import Camera, SiteConfig
from core.events import IncidentEvent
from core.types import Detections, Frame
from evidence.clip import ClipWriter
from evidence.errors import EvidenceError
from evidence.manifest import ModelInfo, config_version
from evidence.recorder import EvidenceRecorder
from evidence.store import EvidenceStore

log = logging.getLogger(__name__)


def model_info(name: str) -> ModelInfo | None:
    """Name and sha256 of a registered detector model, or None for a file that is not registered."""
    from models.registry import registry

    spec = registry().get(name)
    return ModelInfo(name, spec.sha256) if spec is not None else None


class EvidenceAnalyzer:
    def __init__(self, inner: Any, recorder: EvidenceRecorder, camera: Camera) -> None:
        self.inner = inner
        self.recorder = recorder
        self.camera = camera
        self.polygons = {z.id: z.polygon for z in camera.zones}
        self.model = model_info(camera.detector.model)

    def process(self, frame: Frame, detections: Detections) -> list[IncidentEvent]:
        events: list[IncidentEvent] = self.inner.process(frame, detections)
        report = getattr(self.inner, "last", None)  # the analyzer's FrameReport: the tracks drawn over clips
        if report is not None and getattr(report, "pts", None) is not None:
            self.recorder.observe(frame.camera_id, frame.pts, report.tracks)
        return [self._with_evidence(ev, frame) if ev.event == "opened" else ev for ev in events]

    def _with_evidence(self, ev: IncidentEvent, frame: Frame) -> IncidentEvent:
        try:
            links = self.recorder.record(ev, frame, self.polygons.get(ev.zone_id or ""), self.model)
        except Exception as exc:  # never costs the event: it goes out saying its evidence failed
            if not isinstance(exc, EvidenceError):
                log.exception("evidence recorder failed unexpectedly")
            log.error("evidence not recorded: %s", exc, extra={"camera": ev.camera_id, "incident": ev.incident_id})
            failed = ev.evidence.model_copy(update={"error": str(exc)[:500] or type(exc).__name__})
            return ev.model_copy(update={"evidence": failed})
        evidence = ev.evidence.model_copy(update={"links": {**ev.evidence.links, **links}})
        return ev.model_copy(update={"evidence": evidence})

    def __getattr__(self, name: str) -> Any:  # expose the wrapped analyzer's extras (tracks, ...)
        return getattr(self.inner, name)


def with_evidence(factory: Callable[[Camera, SiteConfig], Any],
                  recorder: EvidenceRecorder) -> Callable[[Camera, SiteConfig], EvidenceAnalyzer]:
    def make(camera: Camera, site: SiteConfig) -> EvidenceAnalyzer:
        return EvidenceAnalyzer(factory(camera, site), recorder, camera)
    return make


def packet_listeners(recorder: EvidenceRecorder) -> Callable[[Camera], Callable[[Any, Any], None]]:
    def listener(camera: Camera) -> Callable[[Any, Any], None]:
        return recorder.ring(camera.id).on_packet
    return listener


def build_recorder(config: SiteConfig, *, on_written: Callable[[str, dict[str, Any]], None] | None = None
                   ) -> tuple[EvidenceRecorder, ClipWriter]:
    """Recorder and clip writer from the config's ``evidence`` section. Close the writer at the end."""
    ev = config.evidence
    writer = ClipWriter(max_queue=ev.clip_queue)
    recorder = EvidenceRecorder(EvidenceStore(ev.dir), writer, pre_roll_s=ev.pre_roll_s,
                                post_roll_s=ev.post_roll_s, config_version=config_version(config),
                                timezone=config.site.timezone, on_written=on_written)
    return recorder, writer


def drain(recorder: EvidenceRecorder, writer: ClipWriter, camera_ids: Sequence[str]) -> None:
    """End of run: hand over clips still waiting for post-roll, then finish writing them."""
    for cam in camera_ids:
        recorder.ring(cam).end_of_stream()
    writer.close()
