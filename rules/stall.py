"""Street stalls: evidence of vending that stays in a no_vending zone past the zone's limit.

Four kinds of evidence, each a named signal with a weight from the zone config:

- ``stall_object``: a stall-class object (umbrella, table, chair, cart proxies...) standing still
  in the zone (remembered by place, so occlusion and id swaps do not reset it). Classes in
  ``weak_classes`` (bicycle, motorcycle, small truck) count half: a parked vehicle alone is not
  a stall.
- ``lingering_person``: a person who has stayed near that evidence for ``linger_s``.
- ``static_occupancy``: a static region of the background model (something new standing on
  the ground, :class:`rules.background.DualBackground`) near that evidence.
- ``stall_model``: a region the learned stall signal calls cart (:mod:`models.stall_signal`, run by
  the analyzer and set in :attr:`StallRule.model_regions`), standing still like a stall object; its
  evidence box carries the model's score.

Evidence near each other forms one place (one stall). A place whose weighted score reaches
``evidence_threshold`` starts its clock; the clock survives gaps of up to ``occlusion_grace_s``
and a finding is reported once it has run for ``limit_s``. People alone (a crowd walking by, a
bus-stop queue) can never reach the threshold with default weights: a person is worth 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from camera_config.schema import NoVendingZone
from core.coco import CLASS_ID, COCO80
from core.events import Evidence, EvidenceBox
from core.types import Detections, Frame, Track
from pipeline.tracking import PlaceMemory, Sighting, Station, box_size, ground_point, is_moving, match_tracks
from pipeline.zones import build_zone_mask
from rules.findings import Finding

PERSON = CLASS_ID["person"]
Box = tuple[float, float, float, float]


class ModelRegionLike(Protocol):
    """What the stall rule reads of :class:`models.stall_signal.StallRegion`."""

    @property
    def xyxy(self) -> Box: ...

    @property
    def score(self) -> float: ...


class StaticRegionLike(Protocol):
    """What the stall rule reads of :class:`rules.background.StaticRegion`."""

    @property
    def xyxy(self) -> Box: ...

    @property
    def static_since_pts(self) -> float: ...


@dataclass
class _Clock:
    since: float
    last_true: float


@dataclass
class _Place:
    """One cluster of evidence in this frame."""

    anchor: Box
    key: str
    since: float
    seen_now: bool
    boxes: list[EvidenceBox] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return sum(self.signals.values())


def _near(a: Box, b: Box, factor: float) -> bool:
    (ax, ay), (bx, by) = ground_point(a), ground_point(b)
    reach = factor * max(box_size(a), box_size(b))
    return math.hypot(ax - bx, ay - by) <= reach


def _ebox(label: str, st_box: Box, score: float, track_id: int | None = None) -> EvidenceBox:
    return EvidenceBox(label=label, score=round(min(max(score, 0.0), 1.0), 4),
                       xyxy=(round(st_box[0], 1), round(st_box[1], 1), round(st_box[2], 1), round(st_box[3], 1)),
                       track_id=track_id)


class StallRule:
    """One no_vending zone of one camera. Set :attr:`static_regions` (from the camera's background
    model) before each ``update`` to use static occupancy; leave it empty otherwise."""

    def __init__(self, zone: NoVendingZone, frame_size: tuple[int, int]) -> None:
        self.zone = zone
        self.zone_id = zone.id
        self.frame_size = frame_size
        self.mask = build_zone_mask(zone, *frame_size)
        self.classes = np.array(sorted(CLASS_ID[c] for c in zone.stall_classes), dtype=np.int32)
        self.weak = frozenset(CLASS_ID[c] for c in zone.weak_classes)
        self.objects = PlaceMemory(tolerance=zone.still_tolerance, forget_after_s=zone.occlusion_grace_s)
        self.people = PlaceMemory(tolerance=zone.person_tolerance, forget_after_s=zone.occlusion_grace_s,
                                  size_ratio=2.5)
        self.static_regions: Sequence[StaticRegionLike] = ()
        self.model_regions: Sequence[ModelRegionLike] = ()
        self.model_places = PlaceMemory(tolerance=zone.still_tolerance, forget_after_s=zone.occlusion_grace_s)
        self._clocks: dict[str, _Clock] = {}

    def _sightings(self, frame: Frame, tracks: Sequence[Track], dets: Detections, moving_ok: bool,
                   tolerance: float) -> list[Sighting]:
        out = []
        for box, score, cls, track in zip(dets.xyxy, dets.score, dets.class_id,
                                          match_tracks(dets, tracks, frame.pts), strict=True):
            if not moving_ok and is_moving(track, tolerance):
                continue
            xyxy = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
            out.append(Sighting(xyxy, float(score), int(cls), track.track_id if track else None))
        return out

    def update(self, frame: Frame, tracks: Sequence[Track], detections: Detections) -> list[Finding]:
        confident = detections[detections.score >= self.zone.min_score]
        inside = confident[self.mask.contains_boxes(confident.xyxy)]
        stall = inside[np.isin(inside.class_id, self.classes)]
        people = inside[inside.class_id == PERSON]
        self.objects.update(frame.pts, self._sightings(frame, tracks, stall, False, self.zone.still_tolerance),
                            confident.xyxy)
        self.people.update(frame.pts, self._sightings(frame, tracks, people, True, self.zone.person_tolerance),
                           confident.xyxy)
        if self.zone.weights.stall_model > 0:
            regions = [r for r in self.model_regions if self.mask.contains_boxes(np.asarray([r.xyxy]))[0]]
            self.model_places.update(frame.pts, [Sighting(r.xyxy, float(r.score), -1) for r in regions])
        places = self._places(frame.pts)
        return self._clock(frame.pts, places)

    def _standing(self, st: Station) -> bool:
        return st.coverage(st.last_seen) >= self.zone.min_coverage

    def _places(self, now: float) -> list[_Place]:
        z, w = self.zone, self.zone.weights
        anchors: list[_Place] = []
        for st in self.objects.alive():
            if not self._standing(st):
                continue
            weak = st.class_id in self.weak
            p = _Place(anchor=st.anchor, key=f"o{st.station_id}", since=st.since, seen_now=st.last_seen == now)
            p.boxes.append(_ebox(COCO80[st.class_id], st.last_box, st.mean_score,
                                 max(st.track_ids) if st.track_ids else None))
            p.signals["stall_object"] = w.stall_object * (0.5 if weak else 1.0)
            anchors.append(p)
        for st in self.model_places.alive() if w.stall_model > 0 else ():
            if not self._standing(st):
                continue
            p = _Place(anchor=st.anchor, key=f"m{st.station_id}", since=st.since, seen_now=st.last_seen == now)
            p.boxes.append(_ebox("stall_model", st.last_box, st.mean_score))
            p.signals["stall_model"] = w.stall_model
            anchors.append(p)
        regions = [r for r in self.static_regions if self.mask.contains_boxes(np.asarray([r.xyxy]))[0]]
        for r in regions:
            anchor = (float(r.xyxy[0]), float(r.xyxy[1]), float(r.xyxy[2]), float(r.xyxy[3]))
            p = _Place(anchor=anchor, key="", since=r.static_since_pts, seen_now=True)
            p.boxes.append(_ebox("static_region", p.anchor, 1.0))
            p.signals["static_occupancy"] = w.static_occupancy
            anchors.append(p)
        merged = self._merge(anchors)
        lingering = [st for st in self.people.alive()
                     if st.last_seen - st.since >= z.linger_s and self._standing(st)]
        for p in merged:
            near = [st for st in lingering if _near(p.anchor, st.anchor, z.near_factor)]
            if near:
                p.signals["lingering_person"] = w.lingering_person
                for st in near:
                    p.boxes.append(_ebox("person", st.last_box, st.mean_score,
                                         max(st.track_ids) if st.track_ids else None))
        return merged

    def _merge(self, anchors: list[_Place]) -> list[_Place]:
        """Evidence near each other is one stall: keep the oldest object's place as the anchor,
        take the largest signal of each kind (two umbrellas are one stall, not a bigger one)."""
        anchors.sort(key=lambda p: (p.key == "", p.since, p.key))
        merged: list[_Place] = []
        for p in anchors:
            home = next((m for m in merged if _near(m.anchor, p.anchor, self.zone.near_factor)), None)
            if home is None:
                if not p.key:  # a static region with no object: key it by place
                    gx, gy = ground_point(p.anchor)
                    p.key = f"r{round(gx / 16)}_{round(gy / 16)}"
                merged.append(p)
                continue
            home.boxes.extend(p.boxes)
            home.seen_now = home.seen_now or p.seen_now
            for k, v in p.signals.items():
                home.signals[k] = max(home.signals.get(k, 0.0), v)
        return merged

    def _clock(self, now: float, places: list[_Place]) -> list[Finding]:
        z = self.zone
        findings = []
        for p in places:
            if p.score < z.evidence_threshold - 1e-9:
                continue
            clock = self._clocks.get(p.key)
            if clock is None:
                if not p.seen_now:
                    continue
                clock = self._clocks[p.key] = _Clock(since=now, last_true=now)
            if p.seen_now:
                clock.last_true = now
            if clock.last_true - clock.since >= z.limit_s:
                findings.append(self._finding(p, clock, now))
        self._clocks = {k: c for k, c in self._clocks.items() if now - c.last_true <= z.occlusion_grace_s}
        return findings

    def _finding(self, p: _Place, clock: _Clock, now: float) -> Finding:
        w, h = self.frame_size
        gx, gy = ground_point(p.anchor)
        evidence = Evidence(
            boxes=tuple(p.boxes),
            durations={"evidence_s": round(clock.last_true - clock.since, 3),
                       "unseen_s": round(now - clock.last_true, 3)},
            signals={k: round(v, 3) for k, v in sorted(p.signals.items())},
            thresholds={"limit_s": self.zone.limit_s, "evidence_threshold": self.zone.evidence_threshold,
                        "linger_s": self.zone.linger_s},
            frame_size=(w, h),
        )
        return Finding(type="street_stall", zone_id=self.zone_id, place=(gx / w, gy / h),
                       started_pts=clock.since, severity=self.zone.severity, evidence=evidence)

    def debug_state(self, pts: float) -> dict[str, object]:
        """What the rule sees now, for engineers (``patrol replay --trace/--debug-video``): every
        candidate stall place with its signals, score and evidence clock, and why it fires or not.
        Call right after :meth:`update` of the same frame; reads state only."""
        z = self.zone
        items = []
        for p in self._places(pts):
            clock = self._clocks.get(p.key)
            clock_s = 0.0 if clock is None else clock.last_true - clock.since
            if p.score < z.evidence_threshold - 1e-9:
                why = f"score {p.score:.2f} < evidence_threshold {z.evidence_threshold:g}"
            elif clock_s < z.limit_s:
                why = f"evidence {clock_s:.1f} s < limit {z.limit_s:g} s"
            else:
                why = "fires: " + ", ".join(sorted(p.signals))
            items.append({"id": p.key, "box": [round(float(v), 1) for v in p.anchor], "label": "stall",
                          "score": round(p.score, 3), "signals": {k: round(v, 3) for k, v in sorted(p.signals.items())},
                          "clock_s": round(clock_s, 3), "limit_s": z.limit_s,
                          "fires": why.startswith("fires"), "why": why})
        return {"zone": self.zone_id, "rule": "stall", "items": items}
