"""The six-step loop as a state machine with validated transitions.

    accepted -> dispatched -> disposed -> verified -> archived
    (1, 2: acceptance and report)  (3)  (4: disposal)  (5)    (6: evaluation and archive)

plus ``rejected`` (a false alarm) and ``reopened`` (the problem came back or a rejection was
wrong). ``disposed -> dispatched`` is the verifier finding the problem still there.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

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
