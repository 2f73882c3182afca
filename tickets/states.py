"""The six-step loop as a state machine with validated transitions.

    accepted -> dispatched -> disposed -> verified -> archived
    (1, 2: acceptance and report)  (3)  (4: disposal)  (5)    (6: evaluation and archive)

plus ``rejected`` (a false alarm) and ``reopened`` (the problem came back or a rejection was
wrong). ``disposed -> dispatched`` is the verifier finding the problem still there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from core.errors import PatrolError

State = Literal["accepted", "dispatched", "disposed", "verified", "archived", "rejected", "reopened"]
STATES: Final[tuple[State, ...]] = get_args(State)

TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    "accepted": frozenset({"dispatched", "rejected"}),
    "dispatched": frozenset({"disposed", "rejected"}),
    "disposed": frozenset({"verified", "dispatched"}),
    "verified": frozenset({"archived", "reopened"}),
    "rejected": frozenset({"archived", "reopened"}),
    "archived": frozenset({"reopened"}),
    "reopened": frozenset({"dispatched", "rejected"}),
}

OPEN_STATES: Final[tuple[State, ...]] = ("accepted", "dispatched", "disposed", "reopened")
"""A ticket in these states still needs work: new incidents at its place join it; it can be overdue."""


class TransitionError(PatrolError):
    """A transition the loop does not allow; nothing was changed."""

    def __init__(self, ticket_id: int, current: str, target: str) -> None:
        self.ticket_id, self.current, self.target = ticket_id, current, target
        allowed = ", ".join(sorted(TRANSITIONS.get(current, frozenset()))) or "none"  # type: ignore[call-overload]
        super().__init__(f"ticket {ticket_id}: cannot go from {current!r} to {target!r} "
                         f"(allowed from {current!r}: {allowed})")


def check_transition(ticket_id: int, current: str, target: str) -> State:
    """Return ``target`` as a :data:`State` when allowed, else raise :class:`TransitionError`."""
    if target not in STATES:
        raise TransitionError(ticket_id, current, target)
    if target not in TRANSITIONS.get(current, frozenset()):  # type: ignore[call-overload]
        raise TransitionError(ticket_id, current, target)
    return target


# ---------------------------------------------------------------- loop timings (issue 15)

@dataclass(frozen=True, slots=True)
class Timings:
    """When a ticket reached each step of the loop, from its history, and its deadline.

    ``accepted`` and ``dispatched`` are the first time the ticket got there; ``disposed``,
    ``verified`` and ``archived`` the last (a ticket the verifier sends back is dispatched again and
    disposed again: its disposal counts from the first dispatch, ``redispatched`` says how often).
    """

    accepted: float | None
    dispatched: float | None
    disposed: float | None
    verified: float | None
    archived: float | None
    rejected: float | None
    due_at: float
    overdue: bool
    """Open past its deadline, or the disposal (else the rejection) came after it."""
    redispatched: int

    @property
    def to_dispatch_s(self) -> float | None:
        return _span(self.accepted, self.dispatched)

    @property
    def to_dispose_s(self) -> float | None:
        return _span(self.dispatched, self.disposed)

    @property
    def to_verify_s(self) -> float | None:
        return _span(self.disposed, self.verified)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "dispatched": self.dispatched, "disposed": self.disposed,
                "verified": self.verified, "archived": self.archived, "rejected": self.rejected,
                "due_at": self.due_at, "overdue": self.overdue, "redispatched": self.redispatched,
                "to_dispatch_s": self.to_dispatch_s, "to_dispose_s": self.to_dispose_s,
                "to_verify_s": self.to_verify_s}


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None or end < start else round(end - start, 3)


def loop_timings(history: Sequence[tuple[float, str]], *, due_at: float, state: str, now: float) -> Timings:
    """:class:`Timings` from ``(at, to_state)`` pairs in the order they happened."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    dispatches = 0
    for at, to_state in history:
        first.setdefault(to_state, at)
        last[to_state] = at
        dispatches += to_state == "dispatched"
    done = last.get("disposed", last.get("rejected"))
    # still with someone: the clock runs; disposed (or rejected): was that in time?
    running = state in OPEN_STATES and state != "disposed"
    overdue = now > due_at if running else done is not None and done > due_at
    return Timings(first.get("accepted"), first.get("dispatched"), last.get("disposed"), last.get("verified"),
                   last.get("archived"), last.get("rejected"), due_at, overdue, max(0, dispatches - 1))
