"""Illegal parking: a vehicle standing still in a no_parking zone for at least the zone's limit,
while the zone's schedule is active (the analyzer applies schedules, for every zone: off schedule
this rule is not fed and starts afresh, see :mod:`rules.registry`).

Stillness is judged by place, not by track id (:class:`~pipeline.tracking.PlaceMemory`): a
vehicle's ground point must stay within ``still_tolerance`` x its box size of where it stood
when the clock started, so jitter is tolerated and slow creeping restarts the clock. A vehicle
unseen (a bus in front, missed detections, a new track id) keeps its clock for up to
``occlusion_grace_s``. Tracks that are visibly moving are never offered to the memory, and a
station must have been seen for at least ``min_coverage`` of its dwell, so traffic streaming
through one spot never adds up to a dwell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camera_config.schema import NoParkingZone
from core.coco import CLASS_ID, COCO80
from core.events import Evidence, EvidenceBox
from core.types import Detections, Frame, Track
from pipeline.tracking import PlaceMemory, Sighting, Station, covered_frac, is_moving, match_tracks
from pipeline.zones import build_zone_mask
from rules.findings import Finding

DUPLICATE_COVER = 0.6
"""Two parked stations whose boxes (first or latest) cover each other this much are one vehicle
seen twice (a partial box beside the full one, a car/truck double detection)."""


def _duplicates(a: Station, b: Station) -> bool:
    """One vehicle seen twice: boxes covering each other (``DUPLICATE_COVER``), or one track in
    both (the tracker followed one vehicle; on the kerb clip the dark car's box jumped between its
    two halves, x 307-333 and 330-349 px, under track 8, and each half became a station)."""
    if a.track_ids & b.track_ids:
        return True
    return any(max(covered_frac(x, y), covered_frac(y, x)) >= DUPLICATE_COVER
               for x, y in ((a.anchor, b.anchor), (a.last_box, b.last_box)))


class ParkingRule:
    """One no_parking zone of one camera. ``update`` once per analysed frame."""

    def __init__(self, zone: NoParkingZone, frame_size: tuple[int, int]) -> None:
        self.zone = zone
        self.zone_id = zone.id
        self.frame_size = frame_size
        self.mask = build_zone_mask(zone, *frame_size)
        self.classes = np.array(sorted(CLASS_ID[c] for c in zone.vehicle_classes), dtype=np.int32)
        self.memory = PlaceMemory(tolerance=zone.still_tolerance, forget_after_s=zone.occlusion_grace_s)
        self._duplicate_of: dict[int, int] = {}

    def _sightings(self, frame: Frame, tracks: Sequence[Track], detections: Detections) -> list[Sighting]:
        keep = (np.isin(detections.class_id, self.classes) & (detections.score >= self.zone.min_score)
                & self.mask.contains_boxes(detections.xyxy))
        dets = detections[keep]
        out = []
        for box, score, cls, track in zip(dets.xyxy, dets.score, dets.class_id,
                                          match_tracks(dets, tracks, frame.pts), strict=True):
            if is_moving(track, self.zone.still_tolerance):
                continue
            xyxy = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
            out.append(Sighting(xyxy, float(score), int(cls), track.track_id if track else None))
        return out

    def update(self, frame: Frame, tracks: Sequence[Track], detections: Detections) -> list[Finding]:
        occluders = detections[detections.score >= self.zone.min_score].xyxy
        self.memory.update(frame.pts, self._sightings(frame, tracks, detections), occluders)
        parked = [st for st in self.memory.alive() if self._parked(st, frame.pts)]
        return [self._finding(st, frame.pts) for st in self._one_per_vehicle(parked)]

    def _one_per_vehicle(self, parked: list[Station]) -> list[Station]:
        """Drop stations that duplicate an older parked one. Sticky: a duplicate stays one while
        the station it duplicates is remembered, so box wobble never splits one car in two."""
        alive = self.memory.stations
        self._duplicate_of = {d: m for d, m in self._duplicate_of.items() if d in alive and m in alive}
        kept: list[Station] = []
        for st in sorted(parked, key=lambda s: (s.since, s.station_id)):
            if st.station_id in self._duplicate_of:
                continue
            master = next((k for k in kept if _duplicates(st, k)), None)
            if master is not None:
                self._duplicate_of[st.station_id] = master.station_id
                continue
            kept.append(st)
        return sorted(kept, key=lambda s: s.station_id)

    def _parked(self, st: Station, now: float) -> bool:
        dwell = st.last_seen - st.since
        return dwell >= self.zone.limit_s and st.coverage(st.last_seen) >= self.zone.min_coverage

    def _finding(self, st: Station, now: float) -> Finding:
        w, h = self.frame_size
        gx, gy = st.ground
        track_id = max(st.track_ids) if st.track_ids else None
        box = EvidenceBox(label=COCO80[st.class_id], score=round(min(max(st.mean_score, 0.0), 1.0), 4),
                          xyxy=tuple(round(v, 1) for v in st.last_box),
                          track_id=track_id)
        evidence = Evidence(
            boxes=(box,),
            durations={"dwell_s": round(st.last_seen - st.since, 3), "seen_s": round(st.seen_s, 3),
                       "unseen_s": round(now - st.last_seen, 3)},
            signals={"stationary_vehicle": 1.0},
            thresholds={"limit_s": self.zone.limit_s, "still_tolerance": self.zone.still_tolerance,
                        "min_coverage": self.zone.min_coverage,
                        "occlusion_grace_s": self.zone.occlusion_grace_s},
            frame_size=(w, h),
        )
        return Finding(type="illegal_parking", zone_id=self.zone_id, place=(gx / w, gy / h),
                       started_pts=st.since, severity=self.zone.severity, evidence=evidence)

    def debug_state(self, pts: float) -> dict[str, object]:
        """What the rule sees now, for engineers (``patrol replay --trace/--debug-video``): every
        remembered station with its dwell clock, and why it fires or not. Reads state only."""
        parked = {st.station_id for st in self.memory.alive()  # what update kept (one per vehicle)
                  if self._parked(st, pts) and st.station_id not in self._duplicate_of}
        items = []
        for st in self.memory.alive():
            dwell = st.last_seen - st.since
            coverage = st.coverage(st.last_seen)
            if st.station_id in parked:
                why = "fires: standing vehicle past the limit"
            elif st.station_id in self._duplicate_of:
                why = f"duplicate of station {self._duplicate_of[st.station_id]}"
            elif dwell < self.zone.limit_s:
                why = f"dwell {dwell:.1f} s < limit {self.zone.limit_s:g} s"
            else:
                why = f"seen {coverage:.2f} of its dwell < min_coverage {self.zone.min_coverage:g}"
            items.append({"id": f"s{st.station_id}", "box": [round(v, 1) for v in st.last_box],
                          "label": COCO80[st.class_id], "clock_s": round(dwell, 3),
                          "limit_s": self.zone.limit_s, "coverage": round(coverage, 3),
                          "fires": st.station_id in parked, "why": why})
        return {"zone": self.zone_id, "rule": "parking", "items": items}
