"""Per-camera, per-stage counters of the camera runtime, exported in Prometheus naming.

Each counter has one writer: the camera's reader thread (packets, decoded, sampled, decode time,
reconnects, state) or the inference loop (analysed, infer/analyse time, detections, events); the
latest-frame slot counts drops. Readers take :meth:`CameraMetrics.snapshot`. Labels carry the camera
id only — never a URL, so never a credential.

Stage times are Prometheus histograms (``patrol_stage_seconds_bucket{le=...}``, ``_sum``, ``_count``)
over :data:`STAGE_BUCKETS_S`, so a p95 can be read per camera and stage
(``histogram_quantile(0.95, rate(patrol_stage_seconds_bucket[5m]))``).

One endpoint per node: a worker shard (pipeline/shards.py) sends its cameras' metrics to the parent
as picklable :class:`CameraMetrics` copies (:meth:`CameraMetrics.copy`); the parent keeps the latest
per camera in a :class:`MetricsBoard` and serves them from one registry, so a node with several
worker processes has one ``/metrics``.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

STATES: tuple[str, ...] = ("connecting", "streaming", "reconnecting", "stopped", "failed")
STAGES: tuple[str, ...] = ("decode", "infer", "analyze")
STAGE_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds of the stage-time histogram buckets (+Inf is implied). Unloaded on the reference
machine a 1080p keyframe decodes in ~13-29 ms, YOLOX-Nano runs 14-18 ms, analysis 1-20 ms (README
"Performance"); under load they reach several times that, and a frame late by 0.8 s is shed —
so the buckets are dense between 1 ms and 1 s, with two above for a worker in trouble."""


@dataclass
class StageTime:
    """Total seconds, number of timed calls and their histogram (per bucket of
    :data:`STAGE_BUCKETS_S`, not cumulative; the last slot is +Inf) of one stage."""

    seconds: float = 0.0
    count: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(STAGE_BUCKETS_S) + 1))

    def add(self, seconds: float, count: int = 1) -> None:
        """``count`` calls that took ``seconds`` together (each counted at their mean)."""
        self.seconds += seconds
        self.count += count
        self.buckets[bisect.bisect_left(STAGE_BUCKETS_S, seconds / count if count else seconds)] += count

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them: cumulative, ending with ``+Inf``."""
        out, running = [], 0
        for bound, n in zip((*(repr(b) for b in STAGE_BUCKETS_S), "+Inf"), self.buckets, strict=True):
            running += n
            out.append((bound, float(running)))
        return out

    def copy(self) -> StageTime:
        return StageTime(self.seconds, self.count, list(self.buckets))

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

    def copy(self) -> CameraMetrics:
        """A consistent-enough copy for another process (it pickles: the lock is not carried)."""
        with self._lock:
            detections = Counter(self.detections)
        return CameraMetrics(
            camera_id=self.camera_id, state=self.state, packets=self.packets,
            frames_decoded=self.frames_decoded, frames_in=self.frames_in, frames_dropped=self.frames_dropped,
            frames_analysed=self.frames_analysed, reconnects=self.reconnects, keyframe_only=self.keyframe_only,
            keyframe_interval_s=self.keyframe_interval_s, last_pts=self.last_pts,
            last_frame_wall=self.last_frame_wall, last_error=self.last_error, events=self.events,
            stage={name: t.copy() for name, t in list(self.stage.items())}, detections=detections,
            extra=dict(self.extra))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
        stage = HistogramMetricFamily("patrol_stage_seconds", "Time spent per stage (decode: per packet; "
                                      "infer, analyze: per frame).", labels=["camera", "stage"])
        dets = CounterMetricFamily("patrol_detections", "Detections kept after score thresholds.",
                                   labels=["camera", "class"])
        for c in cams:
            for s in STATES:
                state.add_metric([c.camera_id, s], 1.0 if c.state == s else 0.0)
            keyonly.add_metric([c.camera_id], 1.0 if c.keyframe_only else 0.0)
            for sname, t in c.stage.items():
                stage.add_metric([c.camera_id, sname], buckets=t.cumulative(), sum_value=t.seconds)
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


class MetricsBoard:
    """The latest metrics of every camera of a node whose cameras run in several worker processes.

    Each shard posts copies of its cameras' metrics (:meth:`post`); :meth:`cameras` is what the
    node's one registry (:func:`make_registry`) exports. A shard that restarts starts its counters
    at zero again: Prometheus reads that as a counter reset, as for a restarted process.
    """

    def __init__(self, camera_ids: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, CameraMetrics] = {cid: CameraMetrics(cid) for cid in camera_ids}
        self._posted_at: dict[str, float] = {}

    def post(self, metrics: Iterable[CameraMetrics], now: float | None = None) -> None:
        at = time.time() if now is None else now
        with self._lock:
            for m in metrics:
                self._latest[m.camera_id] = m
                self._posted_at[m.camera_id] = at

    def cameras(self) -> list[CameraMetrics]:
        with self._lock:
            return list(self._latest.values())

    def posted_at(self, camera_id: str) -> float | None:
        with self._lock:
            return self._posted_at.get(camera_id)


METRICS_POST_S = 2.0
"""How often a worker shard sends its cameras' metrics to the parent: a fraction of any sensible
scrape interval (15-60 s), a few kB per 16 cameras down the shard's pipe."""


def forward_metrics(metrics: Callable[[], Iterable[CameraMetrics]], send: Callable[[list[CameraMetrics]], None],
                    stopped: Callable[[float], bool], every_s: float = METRICS_POST_S) -> threading.Thread:
    """Start a daemon thread that sends copies of ``metrics()`` through ``send`` every ``every_s``
    until ``stopped(timeout)`` returns True (it waits up to ``timeout``) or a send fails (the
    parent is gone)."""

    def loop() -> None:
        while not stopped(every_s):
            try:
                send([m.copy() for m in metrics()])
            except (OSError, ValueError, EOFError):  # the pipe is closed: nothing to report to
                return

    thread = threading.Thread(target=loop, name="metrics-forward", daemon=True)
    thread.start()
    return thread
