"""Per-camera, per-stage counters of the camera runtime, exported in Prometheus naming.

Each counter has one writer: the camera's reader thread (packets, decoded, sampled, decode time,
reconnects, state) or the inference loop (analysed, infer/analyse time, detections, events); the
latest-frame slot counts drops. Readers take :meth:`CameraMetrics.snapshot`. Labels carry the camera
id only — never a URL, so never a credential.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

STATES: tuple[str, ...] = ("connecting", "streaming", "reconnecting", "stopped", "failed")
STAGES: tuple[str, ...] = ("decode", "infer", "analyze")


@dataclass
class StageTime:
    """Total seconds and number of timed calls of one stage."""

    seconds: float = 0.0
    count: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.seconds += seconds
        self.count += count

    @property
    def mean_ms(self) -> float:
        return 1000.0 * self.seconds / self.count if self.count else 0.0


@dataclass
class CameraMetrics:
    camera_id: str
    state: str = "connecting"
    packets: int = 0
    """Encoded video packets read from the stream."""
    frames_decoded: int = 0
    """Pictures the decoder produced (only keyframes in keyframe-only mode)."""
    frames_in: int = 0
    """Frames the time sampler passed on towards analysis."""
    frames_dropped: int = 0
    """Frames replaced in the latest-frame slot before the inference loop took them, or skipped as
    too old for their turn (``extra["frames_stale"]`` counts those; see pipeline.worker.STALE_AFTER_S)."""
    frames_analysed: int = 0
    reconnects: int = 0
    keyframe_only: bool = False
    keyframe_interval_s: float | None = None
    last_pts: float | None = None
    last_frame_wall: float | None = None
    last_error: str | None = None
    events: int = 0
    stage: dict[str, StageTime] = field(default_factory=lambda: {s: StageTime() for s in STAGES})
    detections: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)
    """What the analyzer reports about itself (e.g. tracks), shown in the summary."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_detections(self, names: Iterable[str]) -> None:
        with self._lock:
            self.detections.update(names)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            detections = dict(sorted(self.detections.items()))
        return {
            "camera_id": self.camera_id,
            "state": self.state,
            "packets": self.packets,
            "frames_decoded": self.frames_decoded,
            "frames_in": self.frames_in,
            "frames_dropped": self.frames_dropped,
            "frames_analysed": self.frames_analysed,
            "reconnects": self.reconnects,
            "keyframe_only": self.keyframe_only,
            "keyframe_interval_s": self.keyframe_interval_s,
            "last_pts": self.last_pts,
            "events": self.events,
            "stage_ms": {name: round(t.mean_ms, 3) for name, t in self.stage.items()},
            "detections": detections,
            "last_error": self.last_error,
            **self.extra,
        }


class PatrolCollector(Collector):
    """Exposes a live set of :class:`CameraMetrics` to a prometheus_client registry."""

    def __init__(self, cameras: Callable[[], Iterable[CameraMetrics]]) -> None:
        self._cameras = cameras

    def collect(self) -> Iterator[Metric]:
        cams = list(self._cameras())
        counters = {
            "patrol_source_packets": ("Encoded video packets read.", "packets"),
            "patrol_frames_decoded": ("Pictures produced by the decoder.", "frames_decoded"),
            "patrol_frames_in": ("Frames passed by the time sampler towards analysis.", "frames_in"),
            "patrol_frames_dropped": ("Frames replaced in the latest-frame slot unanalysed.", "frames_dropped"),
            "patrol_frames_analysed": ("Frames run through detector and analyzer.", "frames_analysed"),
            "patrol_source_reconnects": ("Reconnections after a stall or error.", "reconnects"),
            "patrol_incident_events": ("Incident events emitted.", "events"),
        }
        for name, (doc, attr) in counters.items():
            fam = CounterMetricFamily(name, doc, labels=["camera"])
            for c in cams:
                fam.add_metric([c.camera_id], float(getattr(c, attr)))
            yield fam
        state = GaugeMetricFamily("patrol_camera_state", "1 for the camera's current source state.",
                                  labels=["camera", "state"])
        keyonly = GaugeMetricFamily("patrol_keyframe_only", "1 when only keyframes are decoded.",
                                    labels=["camera"])
        stage = SummaryMetricFamily("patrol_stage_seconds", "Time spent per stage (per frame or batch).",
                                    labels=["camera", "stage"])
        dets = CounterMetricFamily("patrol_detections", "Detections kept after score thresholds.",
                                   labels=["camera", "class"])
        for c in cams:
            for s in STATES:
                state.add_metric([c.camera_id, s], 1.0 if c.state == s else 0.0)
            keyonly.add_metric([c.camera_id], 1.0 if c.keyframe_only else 0.0)
            for sname, t in c.stage.items():
                stage.add_metric([c.camera_id, sname], count_value=t.count, sum_value=t.seconds)
            with c._lock:
                items = list(c.detections.items())
            for cls, n in items:
                dets.add_metric([c.camera_id, cls], float(n))
        yield from (state, keyonly, stage, dets)


def make_registry(cameras: Callable[[], Iterable[CameraMetrics]]) -> CollectorRegistry:
    """A private registry (not the process-global one) so several workers can live in one process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PatrolCollector(cameras))
    return registry
