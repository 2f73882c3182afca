"""Event-level matching of replayed incidents to labels, and the scores that follow.

One incident per problem: an incident matches a label when type and zone agree and it opens
inside the label's start window (and closes inside its end window, if one is given). Each label
takes at most one incident; a second incident for the same label is a *duplicate* false
positive. Incidents are taken in opening order and each goes to the open label whose window
starts first, so the result does not depend on the order of the input lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from core.events import IncidentEvent
from evaluation.labels import Expected, Quiet

FpReason = Literal["early", "late", "wrong_zone", "wrong_type", "duplicate", "quiet", "unexpected",
                   "bad_end"]


@dataclass(frozen=True, slots=True)
class Observed:
    """One incident as the evaluation sees it: when it opened and closed on the stream clock."""

    incident_id: str
    type: str
    zone: str | None
    opened: float
    closed: float | None = None


def incidents_from_events(events: Iterable[IncidentEvent]) -> list[Observed]:
    """Fold lifecycle events into one :class:`Observed` per incident id, in opening order.

    The stream time of the ``opened`` event is the opening time; without ``stream_pts`` the
    event's ``event_at`` is used (replays of files set both to stream seconds).
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
        out.append(Observed(iid, ev.type, ev.zone_id, t, closed.get(iid)))
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


@dataclass(frozen=True, slots=True)
class FalsePositive:
    incident: Observed
    reason: FpReason


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
        if inside:
            return "duplicate" if any(i in taken for i in inside) else "bad_end"

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


def match_clip(clip: str, incidents: Sequence[Observed], expected: Sequence[Expected],
               quiet: Sequence[Quiet] = (), exhaustive: bool = True) -> ClipResult:
    """Match one clip's incidents to its labels. See the module docstring for the rules."""
    order = sorted(range(len(expected)), key=lambda i: (expected[i].start.lo, i))
    taken: set[int] = set()
    matches: list[Match] = []
    unmatched: list[Observed] = []
    for inc in sorted(incidents, key=lambda o: (o.opened, o.incident_id)):
        hit = next((i for i in order if i not in taken
                    and expected[i].type == inc.type and expected[i].zone == inc.zone
                    and expected[i].start.contains(inc.opened) and _end_ok(expected[i], inc)), None)
        if hit is None:
            unmatched.append(inc)
        else:
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
            fps.append(FalsePositive(inc, reason))
        else:
            unlabelled.append(inc)
    missed = tuple(expected[i] for i in range(len(expected)) if i not in taken)
    return ClipResult(clip, tuple(matches), tuple(fps), missed, tuple(unlabelled))


@dataclass(slots=True)
class Score:
    """Counts and the rates that follow; ``delays`` are start delays of the matches, seconds."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    delays: list[float] = field(default_factory=list)

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

    def as_dict(self) -> dict[str, object]:
        delays = sorted(self.delays)
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
            "delays_s": [round(d, 2) for d in self.delays],
            "median_delay_s": round(delays[len(delays) // 2], 2) if delays else None,
        }


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
        for fp in res.false_positives:
            by_type.setdefault(fp.incident.type, Score()).fp += 1
        for miss in res.missed:
            by_type.setdefault(miss.type, Score()).fn += 1
    for s in by_type.values():
        total.add(s)
    out = dict(sorted(by_type.items()))
    out[OVERALL] = total
    return out
