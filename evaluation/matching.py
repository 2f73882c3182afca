"""Event-level matching of replayed incidents to labels, and the scores that follow.

One incident per problem: an incident matches a label when type and zone agree, it opens inside
the label's start window (and closes inside its end window, if one is given) and, when the label
says ``where``, its place falls inside that box. Each label takes at most one incident; a second
incident for the same label is a *duplicate* false positive. Incidents are taken in opening order
and each goes to the open label whose window starts first (then: whose ground point is
nearest), so the result does not depend on the order of the input lists.

**An incident's place** is the ``location`` of its ``opened`` event: the normalised (x, y)
ground point the rule reported (bottom centre of the vehicle's, stall's or static region's box;
see :class:`rules.findings.Finding`). An event without a location falls back to the bottom centre
of its first evidence box, normalised by the evidence's frame size; without either it has no
place and cannot match a label that says ``where``.

**Place error** of a match is the distance, in normalised units (x as a fraction of the frame's
width, y of its height), from the incident's place to the label's ground point: ``where.point``
when the label gives one, else the bottom centre of the box (where a box drawn around an object
has the object's foot): how far the reported place is from where the labeller put the problem.
It is 0 for a perfect report and at most the box's diagonal for one that matched. A
*wrong_place* false positive (right type, zone and time, outside every such label's box) carries
its distance to the nearest of those boxes instead (0 would be inside).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from core.events import IncidentEvent
from evaluation.labels import Box, Expected, LabelError, Quiet

FpReason = Literal["early", "late", "wrong_zone", "wrong_type", "wrong_place", "duplicate", "quiet",
                   "unexpected", "bad_end"]

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Observed:
    """One incident as the evaluation sees it: when it opened and closed on the stream clock, and
    where (``place``: normalised ground point at opening; None if the incident has no place)."""

    incident_id: str
    type: str
    zone: str | None
    opened: float
    closed: float | None = None
    place: Point | None = None
    box: tuple[float, float, float, float] | None = None
    """Normalised (x1, y1, x2, y2) of the opened event's first evidence box (for reports); None without one."""


def place_of(event: IncidentEvent) -> Point | None:
    """The incident's place: its location, else the bottom centre of its first evidence box."""
    if event.location is not None:
        return (float(event.location[0]), float(event.location[1]))
    ev = event.evidence
    if ev.boxes and ev.frame_size is not None:
        x1, _, x2, y2 = ev.boxes[0].xyxy
        w, h = ev.frame_size
        return ((x1 + x2) / 2 / w, y2 / h)
    return None


def box_of(event: IncidentEvent) -> tuple[float, float, float, float] | None:
    """The event's first evidence box, normalised by its frame size; None without either."""
    ev = event.evidence
    if not ev.boxes or ev.frame_size is None:
        return None
    x1, y1, x2, y2 = ev.boxes[0].xyxy
    w, h = ev.frame_size
    return (x1 / w, y1 / h, x2 / w, y2 / h)


def _norm_box(label: Expected) -> Box | None:
    if label.where is None:
        return None
    if label.where.units != "norm":
        raise LabelError(f"expected {label.type} in zone {label.zone!r}: where box {list(label.where.box)} "
                         "is in pixels; match the normalised labels (ClipLabels.expected)")
    return label.where.box


def _inside(p: Point, box: Box) -> bool:
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def _to_box(p: Point, box: Box) -> float:
    """Distance from a point to a box (0 inside)."""
    dx = max(box[0] - p[0], 0.0, p[0] - box[2])
    dy = max(box[1] - p[1], 0.0, p[1] - box[3])
    return math.hypot(dx, dy)


def place_ok(label: Expected, inc: Observed) -> bool:
    """The label says no place, or the incident's place falls inside its box (edges included)."""
    box = _norm_box(label)
    return box is None or (inc.place is not None and _inside(inc.place, box))


def place_error(label: Expected, inc: Observed) -> float | None:
    """Distance from the incident's place to the label's ground point (``where.point``, else the
    box's bottom centre), in normalised units; None when the label has no ``where`` or the
    incident no place."""
    if _norm_box(label) is None or label.where is None or inc.place is None:
        return None
    gx, gy = label.where.ground
    return math.hypot(inc.place[0] - gx, inc.place[1] - gy)


def incidents_from_events(events: Iterable[IncidentEvent]) -> list[Observed]:
    """Fold lifecycle events into one :class:`Observed` per incident id, in opening order.

    The stream time of the ``opened`` event is the opening time; without ``stream_pts`` the
    event's ``event_at`` is used (replays of files set both to stream seconds). The place is the
    opened event's (:func:`place_of`).
    """
    opened: dict[str, IncidentEvent] = {}
    closed: dict[str, float] = {}
    for ev in events:
        t = ev.stream_pts if ev.stream_pts is not None else ev.event_at
        if ev.event == "opened":
            opened.setdefault(ev.incident_id, ev)
        elif ev.event == "closed":
            closed[ev.incident_id] = t
    out = []
    for iid, ev in opened.items():
        t = ev.stream_pts if ev.stream_pts is not None else ev.event_at
        out.append(Observed(iid, ev.type, ev.zone_id, t, closed.get(iid), place_of(ev), box_of(ev)))
    out.sort(key=lambda o: (o.opened, o.incident_id))
    return out


@dataclass(frozen=True, slots=True)
class Match:
    label: Expected
    incident: Observed

    @property
    def delay_s(self) -> float:
        """Seconds from the problem becoming visible (label start[0]) to the incident opening."""
        return self.incident.opened - self.label.start.lo

    @property
    def place_error(self) -> float | None:
        """Normalised distance from the incident's place to the label box's ground point; None
        when the label has no ``where``."""
        return place_error(self.label, self.incident)


@dataclass(frozen=True, slots=True)
class FalsePositive:
    incident: Observed
    reason: FpReason
    off_by: float | None = None
    """wrong_place: normalised distance from the incident's place to the nearest box it missed."""


@dataclass(frozen=True, slots=True)
class ClipResult:
    """Matching result for one clip."""

    clip: str
    matches: tuple[Match, ...]
    false_positives: tuple[FalsePositive, ...]
    missed: tuple[Expected, ...]
    unlabelled: tuple[Observed, ...] = ()
    """Unmatched incidents outside quiet spans of a non-exhaustive label file: not scored."""


def _end_ok(label: Expected, inc: Observed) -> bool:
    if label.end is None:
        return True
    closed = math.inf if inc.closed is None else inc.closed
    if closed < label.end.lo:
        return False
    return label.end.hi is None or closed <= label.end.hi


def _fp_reason(inc: Observed, labels: Sequence[Expected], taken: set[int]) -> FpReason:
    """Why an unmatched incident did not match, from the most to the least specific cause."""
    same = [(i, lab) for i, lab in enumerate(labels) if lab.type == inc.type and lab.zone == inc.zone]
    if same:
        inside = [i for i, lab in same if lab.start.contains(inc.opened)]
        placed = [i for i in inside if place_ok(labels[i], inc)]
        if placed:
            return "duplicate" if any(i in taken for i in placed) else "bad_end"
        if inside:
            return "wrong_place"

        def gap(lab: Expected) -> float:
            if inc.opened < lab.start.lo:
                return lab.start.lo - inc.opened
            return inc.opened - (lab.start.hi if lab.start.hi is not None else inc.opened)

        nearest = min((lab for _, lab in same), key=gap)
        return "early" if inc.opened < nearest.start.lo else "late"
    if any(lab.type == inc.type and lab.start.contains(inc.opened) for lab in labels):
        return "wrong_zone"
    if any(lab.zone == inc.zone and lab.start.contains(inc.opened) for lab in labels):
        return "wrong_type"
    if any(lab.type == inc.type for lab in labels):
        return "wrong_zone"
    return "unexpected"


def _off_by(inc: Observed, labels: Sequence[Expected]) -> float | None:
    """Distance from a wrong-place incident to the nearest box of the labels it fitted in time."""
    if inc.place is None:
        return None
    boxes = [b for lab in labels if lab.type == inc.type and lab.zone == inc.zone
             and lab.start.contains(inc.opened) and (b := _norm_box(lab)) is not None]
    return min((_to_box(inc.place, b) for b in boxes), default=None)


def match_clip(clip: str, incidents: Sequence[Observed], expected: Sequence[Expected],
               quiet: Sequence[Quiet] = (), exhaustive: bool = True) -> ClipResult:
    """Match one clip's incidents to its labels. See the module docstring for the rules."""
    taken: set[int] = set()
    matches: list[Match] = []
    unmatched: list[Observed] = []
    for inc in sorted(incidents, key=lambda o: (o.opened, o.incident_id)):
        fits = [i for i, lab in enumerate(expected) if i not in taken
                and lab.type == inc.type and lab.zone == inc.zone and lab.start.contains(inc.opened)
                and _end_ok(lab, inc) and place_ok(lab, inc)]
        if not fits:
            unmatched.append(inc)
            continue
        hit = min(fits, key=lambda i: (expected[i].start.lo, place_error(expected[i], inc) or 0.0, i))
        taken.add(hit)
        matches.append(Match(expected[hit], inc))
    fps: list[FalsePositive] = []
    unlabelled: list[Observed] = []
    for inc in unmatched:
        in_quiet = any(q.covers(inc.opened, inc.type, inc.zone) for q in quiet)
        reason = _fp_reason(inc, expected, taken)
        if reason == "unexpected" and in_quiet:
            reason = "quiet"
        if exhaustive or in_quiet or reason == "duplicate":
            fps.append(FalsePositive(inc, reason, _off_by(inc, expected) if reason == "wrong_place" else None))
        else:
            unlabelled.append(inc)
    missed = tuple(expected[i] for i in range(len(expected)) if i not in taken)
    return ClipResult(clip, tuple(matches), tuple(fps), missed, tuple(unlabelled))


@dataclass(slots=True)
class Score:
    """Counts and the rates that follow; ``delays`` are start delays of the matches, seconds;
    ``place_errors`` the place errors of the matches whose label says ``where``, normalised."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    delays: list[float] = field(default_factory=list)
    place_errors: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1.0 when nothing fired (no false alarm was raised)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1.0 when nothing was expected."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, other: Score) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.delays.extend(other.delays)
        self.place_errors.extend(other.place_errors)

    @property
    def median_delay_s(self) -> float | None:
        return _median(self.delays)

    @property
    def median_place_error(self) -> float | None:
        return _median(self.place_errors)

    def as_dict(self) -> dict[str, object]:
        delay, place = self.median_delay_s, self.median_place_error
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
            "delays_s": [round(d, 2) for d in self.delays],
            "median_delay_s": round(delay, 2) if delay is not None else None,
            "place_errors": [round(e, 4) for e in self.place_errors],
            "median_place_error": round(place, 4) if place is not None else None,
        }


def _median(values: Sequence[float]) -> float | None:
    """The upper median (an observed value, as the tables have always shown); None when empty."""
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


OVERALL = "overall"


def score(results: Iterable[ClipResult]) -> dict[str, Score]:
    """Scores per incident type and ``"overall"``: FPs under the incident's type, FNs under the label's."""
    by_type: dict[str, Score] = {}
    total = Score()
    for res in results:
        for m in res.matches:
            s = by_type.setdefault(m.label.type, Score())
            s.tp += 1
            s.delays.append(m.delay_s)
            if (err := m.place_error) is not None:
                s.place_errors.append(err)
        for fp in res.false_positives:
            by_type.setdefault(fp.incident.type, Score()).fp += 1
        for miss in res.missed:
            by_type.setdefault(miss.type, Score()).fn += 1
    for s in by_type.values():
        total.add(s)
    out = dict(sorted(by_type.items()))
    out[OVERALL] = total
    return out
