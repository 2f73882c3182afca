"""The incident lifecycle: findings in, :class:`~core.events.IncidentEvent` out.

One incident per problem and place (camera + zone + location): a finding joins the open incident
of its zone whose place overlaps its own — ground points within ``place_radius``, or the smaller
of the findings' evidence boxes (their places, see :func:`footprint`) at least half inside the
other, or inside the incident's extent so far — preferring one of its own type, then the
nearest; one finding per incident per frame. A finding of another type changes the incident's
type through an ``updated`` event (a fallen branch first seen as a plain obstruction), never
through a second incident. A further finding overlapping an incident that already has one this
frame (a second piece of the same object, a vehicle seen twice) only supports it. Only a finding
overlapping no open incident of its zone opens a new one, unless that place closed (same type)
less than the zone's ``cooldown_s`` ago; so the lifecycle never holds two open incidents of one
zone whose places overlap. An open incident is updated when its evidence changes materially, at
most once per ``update_interval_s``, and closed once no finding has supported it for
``close_grace_s``. Ids are derived from camera, zone, type, place, start and opening time, so
the same input always gives the same ids (a replay, a redelivery) and a reopened place a new one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from camera_config.schema import ZoneBase
from core.events import EventType, Evidence, IncidentEvent
from core.types import Frame
from rules.findings import Finding

Footprint = tuple[float, float, float, float]
PLACE_COVER = 0.5
"""Two findings are at one place when at least this share of the smaller one's box lies inside the
other's (or the incident's whole extent so far): a sliver of the AVSS suitcase lies wholly inside
the suitcase's box, and the kerb clip's second sighting of one car mostly inside the first; parked
neighbours' boxes touch or overlap in perspective, by under a third on the kerb and courtyard clips
(merging on any overlap cost two of their cars)."""


@dataclass(frozen=True, slots=True)
class ZonePolicy:
    """The lifecycle timings of one zone (from its config)."""

    close_grace_s: float
    cooldown_s: float
    update_interval_s: float
    resume_within_s: float = 0.0
    """After a restart, how long an incident the last run left open waits for a finding at its place
    before it is closed (``pipeline_restarted``): the rule must fire again first (its limit), then
    the usual grace."""

    @classmethod
    def of(cls, zone: ZoneBase) -> ZonePolicy:
        return cls(zone.close_grace_s, zone.cooldown_s, zone.update_interval_s,
                   zone.limit_s + zone.close_grace_s)


@dataclass
class _Open:
    incident_id: str
    finding: Finding
    started_at: float
    last_support_pts: float
    last_event_pts: float
    reported: Evidence
    seq: int = 1
    pending: bool = False
    extent: Footprint | None = None
    """Union of the footprints of the findings that supported it: the whole place of the problem
    (a suitcase whose pieces come and go as people pass keeps one place)."""


@dataclass(frozen=True, slots=True)
class LeftOpen:
    """An incident an earlier run of this camera left open (read from the database at start)."""

    incident_id: str
    type: str
    zone_id: str | None
    place: tuple[float, float] | None
    severity: str
    started_at: float
    last_seq: int


@dataclass
class _Resumable:
    left: LeftOpen
    since_pts: float | None = None
    """Stream time of the first frame analysed after the restart."""


STOPPED = "pipeline_stopped"
RESTARTED = "pipeline_restarted"


@dataclass
class _Closed:
    type: str
    zone_id: str
    place: tuple[float, float]
    closed_pts: float


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def footprint(f: Finding) -> Footprint | None:
    """The finding's place as a normalised box: its first evidence box over the evidence's frame
    size; None when it has neither."""
    ev = f.evidence
    if not ev.boxes or ev.frame_size is None:
        return None
    w, h = ev.frame_size
    x1, y1, x2, y2 = ev.boxes[0].xyxy
    return (x1 / w, y1 / h, x2 / w, y2 / h)


def _union(a: Footprint | None, b: Footprint | None) -> Footprint | None:
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _area(b: Footprint) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def places_overlap(a: Finding, b: Finding, radius: float, extent: Footprint | None = None) -> bool:
    """Same zone, and ground points within ``radius`` or one footprint at least ``PLACE_COVER``
    inside the other; ``extent`` stands for ``a``'s footprint when given."""
    if a.zone_id != b.zone_id:
        return False
    if _distance(a.place, b.place) <= radius:
        return True
    fa, fb = extent or footprint(a), footprint(b)
    if fa is None or fb is None:
        return False
    inter = _area((max(fa[0], fb[0]), max(fa[1], fb[1]), min(fa[2], fb[2]), min(fa[3], fb[3])))
    smaller = min(_area(fa), _area(fb))
    return smaller > 0 and inter >= PLACE_COVER * smaller


def material_change(before: Evidence, after: Evidence, rel: float = 0.25) -> bool:
    """Evidence changed enough to tell the ticket system: a signal appeared or went, a signal's
    value moved by more than ``rel``, or the number of evidence boxes changed. Growing
    durations alone are not material (they grow every frame)."""
    if set(before.signals) != set(after.signals) or len(before.boxes) != len(after.boxes):
        return True
    for key, old in before.signals.items():
        new = after.signals[key]
        if abs(new - old) > rel * max(abs(old), 1e-6):
            return True
    return False


@dataclass
class IncidentLifecycle:
    """Per-camera lifecycle; call :meth:`step` once per analysed frame with every rule's findings."""

    camera_id: str
    grid_cell: str
    policies: dict[str, ZonePolicy]
    place_radius: float = 0.05
    _open: list[_Open] = field(default_factory=list)
    _closed: list[_Closed] = field(default_factory=list)
    _resumable: list[_Resumable] = field(default_factory=list)
    _last_pts: float | None = None

    def _policy(self, zone_id: str) -> ZonePolicy:
        try:
            return self.policies[zone_id]
        except KeyError as exc:
            raise KeyError(f"camera {self.camera_id!r}: finding for unknown zone {zone_id!r}") from exc

    def _incident_id(self, f: Finding, started_at: float, opened_at: float) -> str:
        key = (f"{self.camera_id}|{f.zone_id}|{f.type}|{f.place[0]:.3f},{f.place[1]:.3f}|{started_at:.3f}"
               f"|{opened_at:.3f}")
        return f"inc-{f.type[:4]}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"

    def _event(self, inc: _Open, event: EventType, frame: Frame, evidence: Evidence) -> IncidentEvent:
        f = inc.finding
        return IncidentEvent(
            incident_id=inc.incident_id, seq=inc.seq, event=event, type=f.type, camera_id=self.camera_id,
            grid_cell=self.grid_cell, zone_id=f.zone_id, location=(round(f.place[0], 4), round(f.place[1], 4)),
            severity=f.severity, started_at=inc.started_at, event_at=frame.wall_time, stream_pts=frame.pts,
            evidence=evidence)

    def step(self, frame: Frame, findings: Sequence[Finding]) -> list[IncidentEvent]:
        """Advance to ``frame`` with the findings that hold now; return the events it causes."""
        events: list[IncidentEvent] = []
        offset = frame.wall_time - frame.pts
        pairs = sorted(
            ((inc.finding.type != f.type, _distance(inc.finding.place, f.place), i, j)
             for i, inc in enumerate(self._open) for j, f in enumerate(findings)
             if places_overlap(inc.finding, f, self.place_radius, inc.extent)),
        )
        used_inc: set[int] = set()
        used_f: set[int] = set()
        for _, _, i, j in pairs:
            if i in used_inc or j in used_f:
                continue
            used_inc.add(i)
            used_f.add(j)
            inc, f = self._open[i], findings[j]
            retyped = inc.finding.type != f.type
            inc.finding = f
            inc.extent = _union(inc.extent, footprint(f))
            inc.last_support_pts = frame.pts
            if retyped or material_change(inc.reported, f.evidence):
                inc.pending = True
            if retyped or (inc.pending
                           and frame.pts - inc.last_event_pts >= self._policy(f.zone_id).update_interval_s):
                inc.seq += 1
                inc.last_event_pts = frame.pts
                inc.reported = f.evidence
                inc.pending = False
                events.append(self._event(inc, "updated", frame, f.evidence))
        remaining = [j for j in range(len(findings)) if j not in used_f]
        while remaining:
            self._absorb(remaining, findings, frame.pts)
            if not remaining:
                break
            f = findings[remaining.pop(0)]
            resumed = self._resume_at(f, frame)
            if resumed is not None:
                events.append(resumed)
                continue
            if self._cooling(f, frame.pts):
                continue
            started_at = offset + f.started_pts
            inc = _Open(self._incident_id(f, started_at, frame.wall_time), f, started_at, frame.pts, frame.pts,
                        f.evidence, extent=footprint(f))
            self._open.append(inc)
            events.append(self._event(inc, "opened", frame, f.evidence))
        still_open: list[_Open] = []
        for inc in self._open:
            policy = self._policy(inc.finding.zone_id)
            if frame.pts - inc.last_support_pts >= policy.close_grace_s and inc.last_support_pts < frame.pts:
                inc.seq += 1
                f = inc.finding
                durations = dict(f.evidence.durations)
                durations["incident_s"] = round(inc.last_support_pts - (inc.started_at - offset), 3)
                durations["unsupported_s"] = round(frame.pts - inc.last_support_pts, 3)
                events.append(self._event(inc, "closed", frame, f.evidence.model_copy(update={"durations": durations})))
                self._closed.append(_Closed(f.type, f.zone_id, f.place, frame.pts))
            else:
                still_open.append(inc)
        self._open = still_open
        self._closed = [c for c in self._closed
                        if frame.pts - c.closed_pts < self._policy(c.zone_id).cooldown_s]
        events.extend(self._expire_resumable(frame))
        self._last_pts = frame.pts
        return events

    # -- reconciliation at stop and restart -------------------------------------------------------

    def resume(self, left: Sequence[LeftOpen]) -> list[IncidentEvent]:
        """Take over incidents an earlier run left open: a finding at the same place (same zone,
        ground point within ``place_radius``) within the zone's ``resume_within_s`` of the first
        frame continues that incident (an ``updated`` event, the same id, no second incident);
        otherwise it is closed with reason ``pipeline_restarted``. Incidents of a zone this camera
        no longer has, or without a place, are closed at once (returned)."""
        closing: list[IncidentEvent] = []
        for inc in left:
            if inc.zone_id is None or inc.zone_id not in self.policies or inc.place is None:
                closing.append(self._close_left(inc, RESTARTED, inc.started_at, None))
            else:
                self._resumable.append(_Resumable(inc))
        return closing

    def close_all(self, reason: str, wall_time: float) -> list[IncidentEvent]:
        """Close every open incident (and every one still waiting to be resumed) with ``reason``
        at ``wall_time``: the pipeline stops watching, nothing is left open."""
        events: list[IncidentEvent] = []
        for inc in self._open:
            inc.seq += 1
            f = inc.finding
            events.append(IncidentEvent(
                incident_id=inc.incident_id, seq=inc.seq, event="closed", type=f.type, camera_id=self.camera_id,
                grid_cell=self.grid_cell, zone_id=f.zone_id, location=(round(f.place[0], 4), round(f.place[1], 4)),
                severity=f.severity, started_at=inc.started_at, event_at=wall_time, stream_pts=self._last_pts,
                evidence=f.evidence, reason=reason))
        events.extend(self._close_left(r.left, reason, wall_time, self._last_pts) for r in self._resumable)
        self._open, self._resumable = [], []
        return events

    def _resume_at(self, f: Finding, frame: Frame) -> IncidentEvent | None:
        """``f`` confirms an incident left open by the last run: it continues (``updated``)."""
        candidates = [r for r in self._resumable if r.left.zone_id == f.zone_id and r.left.place is not None
                      and _distance(r.left.place, f.place) <= self.place_radius]
        if not candidates:
            return None
        best = min(candidates, key=lambda r: (r.left.type != f.type, _distance(r.left.place or f.place, f.place)))
        self._resumable.remove(best)
        inc = _Open(best.left.incident_id, f, best.left.started_at, frame.pts, frame.pts, f.evidence,
                    seq=best.left.last_seq + 1, extent=footprint(f))
        self._open.append(inc)
        return self._event(inc, "updated", frame, f.evidence)

    def _expire_resumable(self, frame: Frame) -> list[IncidentEvent]:
        events: list[IncidentEvent] = []
        keep: list[_Resumable] = []
        for r in self._resumable:
            if r.since_pts is None:
                r.since_pts = frame.pts
            if frame.pts - r.since_pts >= self._policy(r.left.zone_id or "").resume_within_s:
                events.append(self._close_left(r.left, RESTARTED, frame.wall_time, frame.pts))
            else:
                keep.append(r)
        self._resumable = keep
        return events

    def _close_left(self, inc: LeftOpen, reason: str, wall_time: float, pts: float | None) -> IncidentEvent:
        return IncidentEvent(
            incident_id=inc.incident_id, seq=inc.last_seq + 1, event="closed", type=inc.type,
            camera_id=self.camera_id, grid_cell=self.grid_cell, zone_id=inc.zone_id, location=inc.place,
            severity=inc.severity, started_at=inc.started_at, event_at=wall_time,
            stream_pts=pts, reason=reason)

    @property
    def resumable_count(self) -> int:
        return len(self._resumable)

    def _absorb(self, remaining: list[int], findings: Sequence[Finding], pts: float) -> None:
        """Let every finding in ``remaining`` that overlaps an open incident of its zone support it
        (a second piece of an object, a vehicle seen twice) and widen its extent, so pieces that
        touch each other in a chain end in one incident; remove them from ``remaining``."""
        changed = True
        while changed:
            changed = False
            for j in list(remaining):
                f = findings[j]
                # by box cover only: a distant parked neighbour can stand within place_radius
                overlapped = [inc for inc in self._open
                              if places_overlap(inc.finding, f, 0.0, inc.extent)]
                if overlapped:
                    for inc in overlapped:
                        inc.last_support_pts = pts
                        inc.extent = _union(inc.extent, footprint(f))
                    remaining.remove(j)
                    changed = True

    def _cooling(self, f: Finding, pts: float) -> bool:
        return any(c.type == f.type and c.zone_id == f.zone_id and _distance(c.place, f.place) <= self.place_radius
                   and pts - c.closed_pts < self._policy(f.zone_id).cooldown_s for c in self._closed)

    @property
    def open_count(self) -> int:
        return len(self._open)
