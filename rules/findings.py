"""What a rule reports each analysed frame, before the lifecycle turns it into incident events.

A rule is stateful with one verb: ``update(frame, tracks, detections) -> list[Finding]``, returning
the problems whose condition holds *now* (limit already reached). The lifecycle
(:mod:`rules.lifecycle`) opens, updates (throttled) and closes incidents from these findings,
one incident per problem and place, with grace and cooldown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from core.events import Evidence, IncidentType, Severity
from core.types import Detections, Frame, Track


@dataclass(frozen=True, slots=True)
class Finding:
    type: IncidentType
    zone_id: str
    place: tuple[float, float]
    """Normalised (x, y) ground point of the problem: with the zone, it names the place."""
    started_pts: float
    """Stream time (s) the condition began — the dwell clock's start, not the firing time."""
    severity: Severity
    evidence: Evidence


class Rule(Protocol):
    zone_id: str

    def update(self, frame: Frame, tracks: Sequence[Track], detections: Detections) -> list[Finding]:
        """Feed one analysed frame; return findings whose condition holds now."""
        ...
