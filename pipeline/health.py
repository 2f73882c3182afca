"""Camera health: a camera that stops streaming is an incident of its own (``camera_offline``).

:class:`CameraHealth` watches one camera's :class:`pipeline.sources.SourceState` and has one verb,
``update(state, now_wall, now_monotonic=None, error=None) -> events``:

* not STREAMING (connecting, reconnecting) for more than ``offline_after_s`` -> ``opened``;
  a blip shorter than that opens nothing (the debounce);
* FAILED (a file that cannot be read, a reader that crashed; terminal) -> ``opened`` at once;
* STREAMING again while an incident is open -> ``closed``;
* STOPPED (the worker is stopping, or a file ended cleanly) is no outage: nothing opens, and an
  open incident stays open (the camera did not come back; the worker went away).

One incident per outage: a stable id, ``seq`` 1 (opened) then 2 (closed), severity high, the
camera's grid cell, evidence ``offline_s`` (seconds without a stream so far) and the threshold.
:class:`pipeline.sources.Source` already redacts its error texts; the last one is redacted again
here and travels in the retained health message, never a password.

:class:`HealthMonitor` keeps one :class:`CameraHealth` per camera and also reports the camera's
state ("online" once it streams, "offline" when an incident opens) for the retained MQTT topic
``{prefix}/health/{camera}``; :func:`publish_health` hands both to the worker's sink, the events
through ``publish`` and the reports through ``report_health`` (the outbox commits them as retained
messages; a worker shard forwards them to its parent).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from camera_config.schema import Camera
from core.events import Evidence, IncidentEvent
from core.redact import redact_text
from pipeline.sources import SourceState

log = logging.getLogger("patrol.health")

HealthState = Literal["online", "offline"]
MAX_INCIDENT_ID = 80


def outage_id(camera_id: str, started_at: float) -> str:
    """A stable, readable incident id for one outage of one camera (at most 80 characters)."""
    stamp = f"{round(started_at * 1000):x}"
    readable = f"offline-{camera_id}-{stamp}"
    if len(readable) <= MAX_INCIDENT_ID:
        return readable
    digest = hashlib.sha1(camera_id.encode()).hexdigest()[:16]
    return f"offline-{digest}-{stamp}"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The retained ``{prefix}/health/{camera}`` message."""

    camera_id: str
    state: HealthState
    at: float
    incident_id: str | None = None
    error: str | None = None

    def payload(self) -> str:
        return json.dumps({"camera_id": self.camera_id, "state": self.state, "at": self.at,
                           "incident_id": self.incident_id, "error": self.error}, sort_keys=True)


@dataclass(slots=True)
class _Outage:
    started_wall: float
    started_mono: float
    incident_id: str | None = None  # set once the incident is opened


class CameraHealth:
    """One camera's stream health; ``update`` returns the camera_offline events it caused."""

    def __init__(self, camera_id: str, grid_cell: str, *, offline_after_s: float = 30.0) -> None:
        if not offline_after_s > 0:
            raise ValueError(f"camera {camera_id!r}: offline_after_s must be > 0, got {offline_after_s!r}")
        self.camera_id = camera_id
        self.grid_cell = grid_cell
        self.offline_after_s = offline_after_s
        self.status: HealthState | None = None
        """"online" once it streamed, "offline" while an incident is open, None before either."""
        self.last_error: str | None = None
        self.incidents = 0
        self._outage: _Outage | None = None

    @classmethod
    def from_camera(cls, camera: Camera) -> CameraHealth:
        return cls(camera.id, camera.grid_cell, offline_after_s=camera.watchdog.offline_after_s)

    @property
    def open_incident(self) -> str | None:
        return self._outage.incident_id if self._outage else None

    def update(self, state: SourceState, now_wall: float, now_monotonic: float | None = None,
               error: str | None = None) -> list[IncidentEvent]:
        """Fold in the source's state at ``now``; durations use ``now_monotonic`` when given."""
        now_mono = now_wall if now_monotonic is None else now_monotonic
        if error:
            self.last_error = redact_text(error)
        if state is SourceState.STREAMING:
            return self._streaming(now_wall, now_mono)
        if state is SourceState.STOPPED:
            if self._outage is not None and self._outage.incident_id is None:
                self._outage = None  # stopped during the debounce: no outage to report
            return []
        if self._outage is None:
            self._outage = _Outage(now_wall, now_mono)
        outage = self._outage
        if outage.incident_id is not None:
            return []
        down_s = now_mono - outage.started_mono
        if state is SourceState.FAILED or down_s > self.offline_after_s:
            return [self._open(outage, state, now_wall, down_s)]
        return []

    def _streaming(self, now_wall: float, now_mono: float) -> list[IncidentEvent]:
        outage, self._outage = self._outage, None
        self.status = "online"
        if outage is None or outage.incident_id is None:
            return []
        down_s = now_mono - outage.started_mono
        log.info("camera %s: streaming again after %.1f s offline", self.camera_id, down_s,
                 extra={"camera": self.camera_id, "incident_id": outage.incident_id})
        return [self._event(outage, 2, "closed", now_wall, down_s, failed=False)]

    def _open(self, outage: _Outage, state: SourceState, now_wall: float, down_s: float) -> IncidentEvent:
        outage.incident_id = outage_id(self.camera_id, outage.started_wall)
        self.status = "offline"
        self.incidents += 1
        log.warning("camera %s: offline (%s for %.1f s): %s", self.camera_id, state.value, down_s,
                    self.last_error or "no error reported",
                    extra={"camera": self.camera_id, "incident_id": outage.incident_id})
        return self._event(outage, 1, "opened", now_wall, down_s, failed=state is SourceState.FAILED)

    def _event(self, outage: _Outage, seq: int, event: Literal["opened", "closed"], now_wall: float,
               down_s: float, *, failed: bool) -> IncidentEvent:
        assert outage.incident_id is not None
        return IncidentEvent(
            incident_id=outage.incident_id, seq=seq, event=event, type="camera_offline",
            camera_id=self.camera_id, grid_cell=self.grid_cell, severity="high",
            started_at=outage.started_wall, event_at=now_wall,
            evidence=Evidence(durations={"offline_s": round(max(0.0, down_s), 3)},
                              signals={"source_failed": 1.0 if failed else 0.0},
                              thresholds={"offline_after_s": self.offline_after_s}))


class HealthSink(Protocol):
    """What health is reported through: the worker's ``EventSink`` (pipeline.worker)."""

    def publish(self, events: Sequence[IncidentEvent]) -> None: ...

    def report_health(self, reports: Sequence[HealthReport]) -> None: ...


@dataclass(frozen=True, slots=True)
class HealthCheck:
    events: list[IncidentEvent]
    reports: list[HealthReport]


class HealthMonitor:
    """Every camera's :class:`CameraHealth`, plus a health report whenever a camera's state changes."""

    def __init__(self, cameras: Iterable[Camera]) -> None:
        self.cameras = {cam.id: CameraHealth.from_camera(cam) for cam in cameras}

    def check(self, states: Mapping[str, tuple[SourceState, str | None]], now_wall: float,
              now_monotonic: float | None = None) -> HealthCheck:
        """``states``: camera id -> (source state, last error text or None)."""
        events: list[IncidentEvent] = []
        reports: list[HealthReport] = []
        for camera_id, (state, error) in states.items():
            health = self.cameras[camera_id]
            before = health.status
            new = health.update(state, now_wall, now_monotonic, error)
            events.extend(new)
            if health.status is not None and health.status != before:
                offline = health.status == "offline"
                reports.append(HealthReport(camera_id, health.status, now_wall,
                                            incident_id=new[-1].incident_id if new else None,
                                            error=health.last_error if offline else None))
        return HealthCheck(events, reports)


def publish_health(sink: HealthSink, events: Sequence[IncidentEvent], reports: Sequence[HealthReport]) -> None:
    """The events through ``sink.publish``, then the reports through ``sink.report_health``.

    Reports go after the events (the incident is what must not be lost; a retained state lost in
    a crash between the two is sent again with the next change).
    """
    if events:
        sink.publish(events)
    if reports:
        sink.report_health(reports)
