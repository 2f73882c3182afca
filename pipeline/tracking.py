"""Tracking: the roboflow ``trackers`` ByteTrack wrapped for time-stamped, low-rate analysis,
and a memory of stationary objects by place that does not depend on track ids.

``ObjectTracker.update(pts, detections) -> list[Track]`` feeds ByteTrack the frame's own
timestamp, so skipped frames and 1-2 fps analysis rates are handled in seconds. One ByteTrack
instance runs per class family (vehicles, people, each other class), so a person standing by a
table never takes the table's id. Each :class:`~core.types.Track` carries the recent box
history the rules read.

:class:`PlaceMemory` is what the rules use for dwell clocks: an object standing still is
remembered by where it stands, so a passing bus, missed detections or an id swap do not
restart its clock.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from core.coco import CLASS_ID
from core.types import Detections, Track

VEHICLE_FAMILY = frozenset(CLASS_ID[n] for n in ("car", "truck", "bus"))


def class_family(class_id: int) -> int:
    """Classes the detector confuses for one object (car/truck/bus) share a tracker."""
    return -1 if class_id in VEHICLE_FAMILY else class_id


class ObjectTracker:
    """Multi-object tracker over time-stamped detections.

    Args:
        lost_after_s: seconds a track may go unmatched before it is dropped.
        history_s: seconds of box history each track keeps.
        activation_score: least score that starts a new track.
        high_score: ByteTrack's split between first- and second-stage matches.
        min_iou: least IoU for a match (low: at 1-2 fps boxes move between frames).
    """

    def __init__(self, lost_after_s: float = 3.0, history_s: float = 120.0,
                 activation_score: float = 0.3, high_score: float = 0.45, min_iou: float = 0.1) -> None:
        if lost_after_s <= 0 or history_s <= 0:
            raise ValueError("ObjectTracker: lost_after_s and history_s must be positive")
        self.lost_after_s = lost_after_s
        self.history_s = history_s
        self.activation_score = activation_score
        self.high_score = high_score
        self.min_iou = min_iou
        self._byte: dict[int, object] = {}
        self._ids: dict[tuple[int, int], int] = {}
        self._tracks: dict[int, Track] = {}
        self._votes: dict[int, dict[int, float]] = {}
        self._next_id = 1
        self._last_pts: float | None = None

    def _tracker_for(self, family: int) -> object:
        if family not in self._byte:
            from trackers import ByteTrackTracker

            self._byte[family] = ByteTrackTracker(
                lost_track_buffer=max(1, round(self.lost_after_s * 30)),
                frame_rate=2.0,
                track_activation_threshold=self.activation_score,
                minimum_consecutive_frames=1,
                minimum_iou_threshold=self.min_iou,
                high_conf_det_threshold=self.high_score,
            )
        return self._byte[family]

    def update(self, pts: float, detections: Detections) -> list[Track]:
        """Feed one analysed frame; return the tracks seen in it (confirmed ids only)."""
        import supervision as sv

        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"ObjectTracker.update: pts must increase, got {pts} after {self._last_pts}")
        self._last_pts = pts
        families = np.array([class_family(int(c)) for c in detections.class_id], dtype=np.int64)
        seen: list[Track] = []
        for family in sorted(set(families.tolist()) | set(self._byte)):
            sel = families == family
            det = sv.Detections(xyxy=detections.xyxy[sel].astype(np.float64).reshape(-1, 4),
                                confidence=detections.score[sel].astype(np.float64),
                                class_id=detections.class_id[sel].astype(np.int64))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = self._tracker_for(family).update(det, timestamp=pts)  # type: ignore[attr-defined]
            for i in range(len(out)):
                tid = int(out.tracker_id[i])
                if tid < 0:
                    continue
                key = (family, tid)
                if key not in self._ids:
                    self._ids[key] = self._next_id
                    self._next_id += 1
                seen.append(self._record(self._ids[key], pts, out.xyxy[i], float(out.confidence[i]),
                                         int(out.class_id[i])))
        self._forget(pts)
        return sorted(seen, key=lambda t: t.track_id)

    def _record(self, track_id: int, pts: float, box: np.ndarray, score: float, class_id: int) -> Track:
        xyxy = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        votes = self._votes.setdefault(track_id, {})
        votes[class_id] = votes.get(class_id, 0.0) + score
        majority = max(sorted(votes), key=lambda c: votes[c])
        track = self._tracks.get(track_id)
        if track is None:
            track = Track(track_id=track_id, class_id=majority, first_seen=pts, last_seen=pts,
                          xyxy=xyxy, score=score)
            self._tracks[track_id] = track
        track.class_id, track.last_seen, track.xyxy, track.score = majority, pts, xyxy, score
        track.positions.append((pts, *xyxy))
        while track.positions and track.positions[0][0] < pts - self.history_s:
            track.positions.popleft()
        return track

    def _forget(self, pts: float) -> None:
        for tid in [t for t, tr in self._tracks.items() if pts - tr.last_seen > self.lost_after_s]:
            del self._tracks[tid]
            self._votes.pop(tid, None)

    @property
    def tracks(self) -> list[Track]:
        """Tracks alive now (seen within ``lost_after_s``)."""
        return sorted(self._tracks.values(), key=lambda t: t.track_id)


def box_size(xyxy: tuple[float, float, float, float]) -> float:
    return max(xyxy[2] - xyxy[0], xyxy[3] - xyxy[1], 1.0)


def ground_point(xyxy: tuple[float, float, float, float]) -> tuple[float, float]:
    return ((xyxy[0] + xyxy[2]) / 2, xyxy[3])


def covered_frac(box: tuple[float, float, float, float], other: tuple[float, ...]) -> float:
    """Fraction of ``box``'s area covered by ``other``."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)
    return max(w, 0.0) * max(h, 0.0) / area


@dataclass(frozen=True, slots=True)
class Sighting:
    """One detection offered to a :class:`PlaceMemory`."""

    xyxy: tuple[float, float, float, float]
    score: float
    class_id: int
    track_id: int | None = None


@dataclass
class Station:
    """An object remembered by the place it stands.

    ``anchor`` is the box when the stillness began; a sighting drifting more than the
    tolerance (x box size) from the anchor ends the station, so slow creeping is not
    counted as standing still, while jitter around the anchor is.
    """

    station_id: int
    anchor: tuple[float, float, float, float]
    since: float
    last_seen: float
    last_box: tuple[float, float, float, float]
    score: float
    class_votes: dict[int, float] = field(default_factory=dict)
    track_ids: set[int] = field(default_factory=set)
    seen_s: float = 0.0
    last_present: float = -math.inf
    """Last pts the object was seen or hidden behind another detected object."""
    recent_scores: deque[float] = field(default_factory=lambda: deque(maxlen=10))

    def dwell(self, now: float) -> float:
        return now - self.since

    def coverage(self, now: float) -> float:
        """Fraction of the station's life it was actually seen (time-weighted)."""
        life = now - self.since
        return 1.0 if life <= 0 else min(1.0, self.seen_s / life)

    @property
    def class_id(self) -> int:
        return max(sorted(self.class_votes), key=lambda c: self.class_votes[c])

    @property
    def ground(self) -> tuple[float, float]:
        return ground_point(self.anchor)

    @property
    def mean_score(self) -> float:
        return float(np.mean(self.recent_scores)) if self.recent_scores else self.score


class PlaceMemory:
    """Stationary objects by place, independent of track ids.

    Each ``update(pts, sightings)`` matches sightings one-to-one to remembered stations whose
    anchor ground point is within ``tolerance`` x box size and whose box size is alike
    (ratio within ``size_ratio``). Unmatched sightings start new stations; stations unseen
    for more than ``forget_after_s`` are forgotten. ``seen_s`` accumulates the time between
    consecutive analysed frames that both saw the station, so ``coverage`` tells a standing
    object (seen most of the time) from passing objects that cross the same spot.
    """

    def __init__(self, tolerance: float, forget_after_s: float, size_ratio: float = 1.6,
                 occluded_frac: float = 0.3) -> None:
        self.tolerance = tolerance
        self.occluded_frac = occluded_frac
        self.forget_after_s = forget_after_s
        self.size_ratio = size_ratio
        self.stations: dict[int, Station] = {}
        self._next_id = 1
        self._last_pts: float | None = None

    def clear(self) -> None:
        self.stations.clear()
        self._last_pts = None

    def _cost(self, station: Station, s: Sighting) -> float:
        size = box_size(station.anchor)
        other = box_size(s.xyxy)
        if max(size, other) / min(size, other) > self.size_ratio:
            return math.inf
        (ax, ay), (bx, by) = station.ground, ground_point(s.xyxy)
        d = max(abs(ax - bx), abs(ay - by)) / size
        return d if d <= self.tolerance else math.inf

    def update(self, pts: float, sightings: Iterable[Sighting],
               occluders: Iterable[tuple[float, float, float, float]] = ()) -> list[Station]:
        """Feed one frame's sightings; return the stations seen in this frame.

        ``occluders`` are this frame's other detected boxes: a station not seen but covered by
        one (by at least ``occluded_frac`` of its area, e.g. a bus passing in front) counts as
        present for ``coverage``; only a real sighting refreshes ``last_seen``.
        """
        prev = self._last_pts
        self._last_pts = pts
        items = list(sightings)
        pairs = sorted(
            (c, sid, i) for sid, st in self.stations.items() for i, s in enumerate(items)
            if math.isfinite(c := self._cost(st, s))
        )
        used_st: set[int] = set()
        used_s: set[int] = set()
        seen: list[Station] = []
        for _c, sid, i in pairs:
            if sid in used_st or i in used_s:
                continue
            used_st.add(sid)
            used_s.add(i)
            st, s = self.stations[sid], items[i]
            if prev is not None and st.last_present == prev:
                st.seen_s += pts - prev
            st.last_seen, st.last_present, st.last_box, st.score = pts, pts, s.xyxy, s.score
            st.recent_scores.append(s.score)
            st.class_votes[s.class_id] = st.class_votes.get(s.class_id, 0.0) + s.score
            if s.track_id is not None:
                st.track_ids.add(s.track_id)
            seen.append(st)
        for i, s in enumerate(items):
            if i in used_s:
                continue
            st = Station(station_id=self._next_id, anchor=s.xyxy, since=pts, last_seen=pts, last_box=s.xyxy,
                         score=s.score, class_votes={s.class_id: s.score}, last_present=pts,
                         track_ids={s.track_id} if s.track_id is not None else set())
            st.recent_scores.append(s.score)
            self._next_id += 1
            self.stations[st.station_id] = st
            seen.append(st)
        boxes = [tuple(map(float, b)) for b in occluders]
        for sid, st in self.stations.items():
            if sid not in used_st and any(covered_frac(st.anchor, b) >= self.occluded_frac for b in boxes):
                if prev is not None and st.last_present == prev:
                    st.seen_s += pts - prev
                st.last_present = pts
        for sid in [k for k, st in self.stations.items() if pts - st.last_seen > self.forget_after_s]:
            del self.stations[sid]
        return sorted(seen, key=lambda st: st.station_id)

    def alive(self) -> list[Station]:
        return sorted(self.stations.values(), key=lambda st: st.station_id)


def is_moving(track: Track | None, tolerance: float, window_s: float = 2.0) -> bool:
    """Whether a track's ground point moved more than ``tolerance`` x box size in the last
    ``window_s`` seconds of its history (False when there is too little history to tell)."""
    if track is None or len(track.positions) < 2:
        return False
    size = box_size(track.xyxy)
    gx, gy = track.bottom_center
    for t, x1, _y1, x2, y2 in reversed(track.positions):
        if track.last_seen - t > window_s:
            break
        if max(abs((x1 + x2) / 2 - gx), abs(y2 - gy)) > tolerance * size:
            return True
    return False


def match_tracks(detections: Detections, tracks: Iterable[Track], pts: float) -> list[Track | None]:
    """For each detection, the track updated in this frame with the same box (or None)."""
    current = [t for t in tracks if t.last_seen == pts]
    out: list[Track | None] = []
    for box in detections.xyxy:
        best: Track | None = None
        best_d = 2.0
        for t in current:
            d = float(np.abs(np.asarray(t.xyxy) - box).max())
            if d < best_d:
                best, best_d = t, d
        out.append(best)
    return out
