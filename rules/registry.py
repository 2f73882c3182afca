"""One registry of rule kinds: a zone type, its schema class, its rule and its verification check,
declared together.

A new rule kind is one rule module plus its schema class (a :class:`camera_config.schema.ZoneBase`
subclass whose ``type`` is ``Literal["<name>"]``), registered here::

    register(RuleKind(schema=LitterZone, rule=lambda zone, ctx: LitterRule(zone, ctx.frame_size),
                      check=lambda zone, default_score: ZoneCheck.of_classes(zone, ["bottle"], 0.3)))

:func:`register` also registers the schema class with the config's zone-type table, so site files
accept the new type, ``patrol config-schema`` lists it, and every other place reads this registry:
the per-camera analyzer (:mod:`rules.analyzer`) builds each zone's rule from its kind and applies
the zone's schedule the way the kind says; the verifier (:func:`zone_check`)
takes the kind's check; replay and tuning (:mod:`evaluation`) ask whether the kind reads pixels.
A zone type with no registered kind is an :class:`UnknownRuleKind` error wherever it is met, never
another kind's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar
from zoneinfo import ZoneInfo

from camera_config.schema import (
    KeepClearZone,
    NoParkingZone,
    NoVendingZone,
    ZoneBase,
    register_zone_schema,
    unregister_zone_schema,
    zone_type_of,
)
from core.errors import PatrolError
from core.types import Detections
from rules.checks import ZoneCheck, not_ignored_check, stall_check, vehicle_check
from rules.findings import Rule
from rules.obstruction import ObstructionRule
from rules.parking import ParkingRule
from rules.stall import StallRule, StaticRegionLike

Z = TypeVar("Z", bound=ZoneBase)

OffSchedule = Literal["reset", "observe"]
"""What a zone's rule does while its schedule is inactive (the analyzer applies it, for every zone):

* ``reset`` — the rule is not fed, and what it had counted is forgotten: it starts afresh when the
  schedule becomes active again (a dwell counts only while the ban holds);
* ``observe`` — the rule is fed every frame (a background model keeps learning the scene) but its
  findings are dropped; an object that arrived off schedule is reported once the schedule is active.
"""


class UnknownRuleKind(PatrolError, KeyError):
    """A zone type no rule kind is registered for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule is built with besides its zone: the analysed frame size and the site's time zone."""

    frame_size: tuple[int, int]
    tz: ZoneInfo


class OccupancyFed(Protocol):
    """A rule of a kind with ``static_occupancy``: the analyzer sets this before each ``update``."""

    static_regions: Sequence[StaticRegionLike]


class WeakFed(Protocol):
    """A rule of a kind with ``weak_detections``: the analyzer sets this before each ``update``."""

    weak_detections: Detections | None


@dataclass(frozen=True)
class RuleKind(Generic[Z]):
    """One kind of rule, declared in one place."""

    schema: type[Z]
    """The zone's config schema; its ``type`` literal names the kind."""
    rule: Callable[[Z, RuleContext], Rule]
    """Builds the zone's rule for one frame size (``update(frame, tracks, detections) -> findings``)."""
    check: Callable[[Z, float], ZoneCheck]
    """``(zone, camera default score) -> ZoneCheck``: what the verifier looks for after disposal."""
    reads_pixels: bool = False
    """The rule reads frame pixels (a background model): a replay must decode real pictures, black
    stand-in frames are exact only for rules that read detections alone."""
    static_occupancy: bool = False
    """The rule takes ``static_regions`` (:class:`OccupancyFed`) from the camera's shared background
    model, which the analyzer runs when any zone needs it (and the analyzer is allowed pixels)."""
    weak_detections: bool = False
    """The rule also takes ``weak_detections`` (:class:`WeakFed`): this frame's detections past the
    class thresholds and the others from ``detector.ignore_score`` up, for its background model's
    people and vehicles; its ``update`` still gets the thresholded ones."""
    off_schedule: OffSchedule = "reset"
    """See :data:`OffSchedule`."""
    zone_type: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone_type", zone_type_of(self.schema))
        if self.static_occupancy and not self.reads_pixels:
            raise ValueError(f"rule kind {self.zone_type!r}: static_occupancy reads pixels; set reads_pixels")


_KINDS: dict[str, RuleKind[Any]] = {}


def register(kind: RuleKind[Any]) -> RuleKind[Any]:
    """Register ``kind`` and its schema class (the config then accepts its zone type). Registering a
    second kind under a taken zone type is an error; the same kind again is a no-op."""
    known = _KINDS.get(kind.zone_type)
    if known is not None and known != kind:
        raise ValueError(f"rule kind {kind.zone_type!r} is already registered "
                         f"(schema {known.schema.__module__}.{known.schema.__qualname__})")
    register_zone_schema(kind.schema)
    _KINDS[kind.zone_type] = kind
    return kind


def unregister(zone_type: str) -> None:
    """Forget a kind and its zone type (a test's toy kind cleans up with this)."""
    if _KINDS.pop(zone_type, None) is None:
        raise UnknownRuleKind(f"no rule kind {zone_type!r} to unregister (known: {', '.join(sorted(_KINDS))})")
    unregister_zone_schema(zone_type)


def rule_kind(zone_type: str) -> RuleKind[Any]:
    """The kind registered for ``zone_type``; :class:`UnknownRuleKind` naming the known ones otherwise."""
    try:
        return _KINDS[zone_type]
    except KeyError:
        raise UnknownRuleKind(f"zone type {zone_type!r} has no registered rule kind "
                              f"(known: {', '.join(sorted(_KINDS))})") from None


def rule_kinds() -> tuple[RuleKind[Any], ...]:
    """Every registered kind, by zone type."""
    return tuple(_KINDS[name] for name in sorted(_KINDS))


def zone_check(zone: ZoneBase, default_score: float) -> ZoneCheck:
    """The verification check registered for ``zone.type`` (:class:`UnknownRuleKind` for a type no rule
    kind declares, never another kind's check)."""
    return rule_kind(zone.type).check(zone, default_score)


def kinds_of(zones: Sequence[ZoneBase], where: str) -> tuple[RuleKind[Any], ...]:
    """The kind of each zone, or one :class:`UnknownRuleKind` naming ``where`` (a camera) and the zone."""
    out = []
    for zone in zones:
        try:
            out.append(rule_kind(zone.type))
        except UnknownRuleKind as exc:
            raise UnknownRuleKind(f"{where}: zone {zone.id!r}: {exc}") from None
    return tuple(out)


register(RuleKind(NoParkingZone, lambda zone, ctx: ParkingRule(zone, ctx.frame_size), vehicle_check))
register(RuleKind(NoVendingZone, lambda zone, ctx: StallRule(zone, ctx.frame_size), stall_check,
                  reads_pixels=True, static_occupancy=True))
register(RuleKind(KeepClearZone, lambda zone, ctx: ObstructionRule(zone, ctx.frame_size), not_ignored_check,
                  reads_pixels=True, weak_detections=True, off_schedule="observe"))
