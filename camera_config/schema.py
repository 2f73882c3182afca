"""Pydantic models of a site's YAML config.

Strict (``extra="forbid"``), immutable and pure: validators do no I/O, and runtime state
(pixel masks, compiled schedules) is built from this config elsewhere, never stored in it.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from camera_config.geometry import polygon_problem
from core.coco import COCO80
from core.events import IncidentType

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
INCIDENT_TYPES: tuple[str, ...] = get_args(IncidentType)
MAX_POLYGON_POINTS = 256
"""Most vertices of a zone outline: drawn zones have 4-6 (the 18 in the repo and shared data: at most 6);
the crossing check compares every pair of edges, 256 points take about 20 ms."""


class Strict(BaseModel):
    # allow_inf_nan=False: YAML's .nan / .inf are refused as "not a finite number" by every float field,
    # before any bound is checked (a NaN fails every comparison, so a bound check reads as nonsense)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DuplicateIdError(ValueError):
    """Two items share an id; carries where, so the loader can name the camera and field."""

    def __init__(self, kind: str, ident: str, first: int, second: int) -> None:
        self.kind, self.ident, self.first, self.second = kind, ident, first, second
        super().__init__(f"duplicate {kind} id {ident!r} (also at index {first})")


def _check_classes(names: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in COCO80]
    if unknown:
        raise ValueError(f"unknown COCO class name(s) {unknown}; see core/coco.py for the 80 names")
    return names


class TimeWindow(Strict):
    """A daily window in the site's time zone; ``end`` before ``start`` wraps past midnight."""

    start: time = Field(description="Start of the window, HH:MM, site time zone.")
    end: time = Field(description="End of the window, HH:MM (exclusive); may wrap past midnight.")
    weekdays: tuple[Weekday, ...] = Field(default=ALL_WEEKDAYS, min_length=1,
                                          description="Days the window starts on.")


class Schedule(Strict):
    """When a zone's rule is active. No schedule means always active."""

    windows: tuple[TimeWindow, ...] = Field(min_length=1)


class ZoneBase(Strict):
    """What every zone has. A zone type is a subclass whose ``type`` is ``Literal["<name>"]``,
    registered with :func:`register_zone_schema` (the rule registry, :mod:`rules.registry`, does it
    for every rule kind it declares)."""

    id: str = Field(pattern=_ID, description="Zone id, unique within the camera.")
    type: str = Field(description="Zone type: names the zone's schema, its rule and its verification check.")
    polygon: tuple[Point, ...] = Field(min_length=3, max_length=MAX_POLYGON_POINTS, description=(
        "Vertices, normalised (x, y) in 0..1, in order around a simple outline: edges must not cross "
        "or touch, and the area must be at least 1e-6 of the frame."))
    schedule: Schedule | None = Field(default=None, description="Active times; absent means always.")
    limit_s: float = Field(gt=0, le=86_400, description="Seconds the condition must hold before an incident.")
    close_grace_s: float = Field(default=30.0, ge=0, le=3_600,
                                 description="Seconds the cause must be gone before the incident closes.")
    cooldown_s: float = Field(default=120.0, ge=0, le=86_400,
                              description="Seconds after a close before the same place can reopen.")
    update_interval_s: float = Field(default=60.0, ge=1, le=3_600,
                                     description="Least seconds between two 'updated' events of one incident.")
    severity: Literal["low", "medium", "high"] = "medium"

    @field_validator("polygon")
    @classmethod
    def _simple_outline(cls, polygon: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        problem = polygon_problem(polygon)
        if problem is not None:
            raise ValueError(problem)
        return polygon


class NoParkingZone(ZoneBase):
    type: Literal["no_parking"]
    limit_s: float = Field(default=180.0, gt=0, le=86_400)
    vehicle_classes: tuple[str, ...] = Field(default=("car", "truck", "bus", "motorcycle"), min_length=1)
    still_tolerance: float = Field(default=0.25, gt=0, le=2.0,
                                   description="Max drift of the ground point, as a fraction of box size.")
    occlusion_grace_s: float = Field(default=20.0, ge=0, le=600,
                                     description="Seconds a stationary vehicle may be unseen without "
                                                 "its dwell clock restarting.")
    min_coverage: float = Field(default=0.5, gt=0, le=1,
                                description="Least fraction of the dwell time the vehicle must actually "
                                            "have been seen (tells one parked car from a stream of "
                                            "passing cars crossing the same spot).")
    min_score: float = Field(default=0.25, ge=0, le=1)

    _classes = field_validator("vehicle_classes")(_check_classes)


class StallWeights(Strict):
    stall_object: float = Field(default=1.0, ge=0, le=10)
    lingering_person: float = Field(default=0.5, ge=0, le=10)
    static_occupancy: float = Field(default=0.5, ge=0, le=10)
    stall_model: float = Field(default=0.0, ge=0, le=10, description=(
        "Weight of a region the learned stall signal (models/stall_signal.py) calls cart; 0 (the "
        "default) leaves the model off. It is opt-in: trained on 101 street photos, it also scores "
        "unfamiliar scenes high (see models/stall_thela_lr.md) and costs about 35 ms of CPU per run."))


class NoVendingZone(ZoneBase):
    type: Literal["no_vending"]
    limit_s: float = Field(default=300.0, gt=0, le=86_400)
    stall_classes: tuple[str, ...] = Field(
        default=("umbrella", "dining table", "bench", "chair", "potted plant", "suitcase",
                 "bicycle", "motorcycle", "truck"), min_length=1)
    weak_classes: tuple[str, ...] = Field(
        default=("bicycle", "motorcycle", "truck"),
        description="Stall classes that count half (vehicles standing still are a stall only with "
                    "more evidence, e.g. a vendor lingering by them).")
    linger_s: float = Field(default=60.0, gt=0, le=3_600,
                            description="Seconds a person must stay near stall evidence to count as lingering.")
    still_tolerance: float = Field(default=0.3, gt=0, le=2.0,
                                   description="Max drift of a stall object's ground point, as a fraction "
                                               "of its box size.")
    person_tolerance: float = Field(default=1.0, gt=0, le=5.0,
                                    description="Max drift of a lingering person's ground point, as a "
                                                "fraction of their box height (vendors move about).")
    near_factor: float = Field(default=1.5, gt=0, le=10,
                               description="Evidence is 'near' when ground points are within this many "
                                           "box sizes of each other.")
    weights: StallWeights = StallWeights()
    evidence_threshold: float = Field(default=1.0, gt=0, le=30,
                                      description="Weighted evidence score that counts as a stall.")
    occlusion_grace_s: float = Field(default=30.0, ge=0, le=600,
                                     description="Seconds evidence may be unseen without its clock restarting.")
    min_coverage: float = Field(default=0.5, gt=0, le=1,
                                description="Least fraction of its life a stall object must have been seen.")
    min_score: float = Field(default=0.25, ge=0, le=1)
    model_interval_s: float = Field(default=10.0, gt=0, le=600, description=(
        "Stream seconds between two runs of the learned stall signal on the camera (its regions hold "
        "in between): a stall must stand for limit_s (minutes), a run costs about one detector pass."))

    _classes = field_validator("stall_classes", "weak_classes")(_check_classes)

    @model_validator(mode="after")
    def _weak_are_stall_classes(self) -> NoVendingZone:
        extra = [c for c in self.weak_classes if c not in self.stall_classes]
        if extra:
            raise ValueError(f"weak_classes {extra} must also be listed in stall_classes")
        return self


class KeepClearZone(ZoneBase):
    type: Literal["keep_clear"]
    limit_s: float = Field(default=30.0, gt=0, le=86_400)
    min_area: float = Field(default=0.001, gt=0, le=1,
                            description="Least area of a static object, as a fraction of the frame "
                                        "(0.001 is about 45x45 px at 1920x1080).")
    long_term_s: float = Field(default=120.0, gt=0, le=86_400,
                               description="Time constant of the long-term background, seconds.")
    short_term_s: float = Field(default=5.0, gt=0, le=3_600,
                                description="Time constant of the short-term background, seconds.")
    diff_threshold: float = Field(default=30.0, gt=0, le=255,
                                  description="Grey-level difference that counts as foreground.")
    low_contrast: bool = Field(default=False, description=(
        "Also find objects that differ little from their background (colour, texture, a floor of 10 grey "
        "levels away from people): finds a faint object, but on a glossy floor its reflection too."))
    ignore_classes: tuple[str, ...] = Field(default=("person", "car", "truck", "bus", "motorcycle", "bicycle"))

    _classes = field_validator("ignore_classes")(_check_classes)

    @model_validator(mode="after")
    def _short_before_long(self) -> KeepClearZone:
        if self.short_term_s >= self.long_term_s:
            raise ValueError("short_term_s must be shorter than long_term_s")
        return self


# --- the zone-type table ------------------------------------------------------------------------
# A camera's zones validate through this table, not a union fixed at import: a new zone type is
# one schema class registered here (by rules.registry, with its rule and verification check),
# and no other schema changes. An unknown type is a validation error naming the known ones.

_ZONE_SCHEMAS: dict[str, type[ZoneBase]] = {}


def zone_type_of(schema: type[ZoneBase]) -> str:
    """The type name a zone schema class declares: its ``type`` field must be ``Literal["name"]``."""
    field = schema.model_fields.get("type")
    annotation = field.annotation if field is not None else None
    values = get_args(annotation) if get_origin(annotation) is Literal else ()
    if len(values) != 1 or not isinstance(values[0], str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", values[0]):
        raise TypeError(f"zone schema {schema.__qualname__}: field 'type' must be Literal['<name>'] with one "
                        f"lower-case name, got {annotation!r}")
    return values[0]


def register_zone_schema(schema: type[ZoneBase]) -> str:
    """Let cameras' ``zones`` accept ``schema`` under its type name; returns the name.

    Registering the same class again is a no-op; another class under a taken name is an error."""
    if not (isinstance(schema, type) and issubclass(schema, ZoneBase)):
        raise TypeError(f"zone schema {schema!r} must be a subclass of camera_config.schema.ZoneBase")
    name = zone_type_of(schema)
    known = _ZONE_SCHEMAS.get(name)
    if known is not None and known is not schema:
        raise ValueError(f"zone type {name!r} is already registered to {known.__module__}.{known.__qualname__}; "
                         f"cannot register {schema.__module__}.{schema.__qualname__}")
    _ZONE_SCHEMAS[name] = schema
    return name


def unregister_zone_schema(zone_type: str) -> None:
    """Forget a zone type (tests that register a toy type clean up with this)."""
    if _ZONE_SCHEMAS.pop(zone_type, None) is None:
        raise KeyError(f"zone type '{zone_type}' is not registered (known: {', '.join(zone_types())})")


def zone_types() -> tuple[str, ...]:
    """Every registered zone type, sorted."""
    return tuple(sorted(_ZONE_SCHEMAS))


def zone_schema(zone_type: str) -> type[ZoneBase]:
    """The schema class of ``zone_type``; :class:`KeyError` naming the known types if it has none."""
    try:
        return _ZONE_SCHEMAS[zone_type]
    except KeyError:
        raise KeyError(f"unknown zone type '{zone_type}' (known: {', '.join(zone_types())})") from None


def _zone_error(kind: str, template: str, value: Any, loc: tuple[str, ...] = (),
                **ctx: Any) -> ValidationError:
    """A one-line validation error at ``loc`` (relative to the zone) that lists the known types."""
    error = PydanticCustomError(kind, template + "; known types: {known}", {**ctx, "known": ", ".join(zone_types())})
    return ValidationError.from_exception_data("Zone", [{"type": error, "loc": loc, "input": value}])


def _validate_zone(value: Any, info: ValidationInfo) -> ZoneBase:
    """Dispatch on ``type`` to the registered schema class; its own errors keep their locations."""
    if isinstance(value, ZoneBase):
        if _ZONE_SCHEMAS.get(value.type) is type(value):
            return value
        raise _zone_error("unknown_zone_type", "zone type '{zone_type}' ({cls}) is not registered", value.type,
                          ("type",), zone_type=value.type, cls=type(value).__qualname__)
    if not isinstance(value, dict):
        raise _zone_error("zone_type", "expected a zone mapping, got {got}", value, got=type(value).__name__)
    if "type" not in value:
        raise _zone_error("missing", "missing zone type", value, ("type",))
    name = value["type"]
    schema = _ZONE_SCHEMAS.get(name) if isinstance(name, str) else None
    if schema is None:
        raise _zone_error("unknown_zone_type", "unknown zone type '{zone_type}'", name, ("type",), zone_type=name)
    return schema.model_validate(value, context=info.context)


class _RegisteredZone:
    """Pydantic type of one zone: validated through the zone-type table at validation time,
    serialised by its own class, JSON Schema = the tagged union of every registered type."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.with_info_plain_validator_function(
            _validate_zone, serialization=core_schema.simple_ser_schema("any"))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        choices: dict[str, CoreSchema] = {name: _ZONE_SCHEMAS[name].__pydantic_core_schema__
                                          for name in zone_types()}
        return handler(core_schema.tagged_union_schema(choices, discriminator="type"))


Zone = Annotated[ZoneBase, _RegisteredZone]
"""One zone of any registered type."""

for _builtin in (NoParkingZone, NoVendingZone, KeepClearZone):
    register_zone_schema(_builtin)


class CropBox(Strict):
    """A part of the frame the detector also looks at closely (``detector.regions``)."""

    box: tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)],
               Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        description="[x1, y1, x2, y2] normalised to 0..1 of the frame (x right, y down); x1 < x2, y1 < y2.")

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if not (box[0] < box[2] and box[1] < box[3]):
            raise ValueError(f"crop box {list(box)} must have x1 < x2 and y1 < y2")
        return box


class DetectorChoice(Strict):
    model: str = Field(default="yolox_nano_416", description="Name in models/registry.yaml.")
    default_score: float = Field(default=0.3, ge=0, le=1)
    class_scores: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="Per-class score thresholds by COCO name.")
    ignore_score: float = Field(default=0.2, ge=0, le=1, description=(
        "Least score of a person or vehicle detection (a keep_clear zone's `ignore_classes`) that the "
        "background model keeps out of its static objects, though no rule acts on it below the class "
        "threshold: a person scored 0.29 who sits still is not a left object."))
    regions: Literal["auto", "off", "zones"] | tuple[CropBox, ...] = Field(default="auto", description=(
        "Zone-focused detection (models/regions.py): besides the whole frame the detector runs on tiles "
        "at native resolution. `auto`: around each zone that fits in a few tiles, and only when the "
        "frame is shrunk more than 2x to the model input; `off`: the whole frame only; `zones`: around "
        "every zone whatever the frame size; or a list of crop boxes `{box: [x1, y1, x2, y2]}`."))

    @field_validator("class_scores")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        _check_classes(tuple(value))
        return value

    @property
    def lowest_score(self) -> float:
        """The score the detector itself must run at: the loosest threshold this choice uses
        (the analyzer applies the per-class ones, and ``ignore_score`` for the background model)."""
        return min([self.default_score, *self.class_scores.values(), self.ignore_score])


class Watchdog(Strict):
    stall_timeout_s: float = Field(default=10.0, gt=0, le=600, description="No frame this long -> reconnect.")
    backoff_initial_s: float = Field(default=1.0, gt=0, le=60)
    backoff_max_s: float = Field(default=30.0, gt=0, le=3_600)
    open_timeout_s: float = Field(default=10.0, gt=0, le=120)
    offline_after_s: float = Field(default=30.0, gt=0, le=86_400,
                                   description="Not streaming this long -> camera_offline incident.")


class Camera(Strict):
    id: str = Field(pattern=_ID, description="Camera id, unique within the site.")
    url: SecretStr = Field(description="rtsp://user:pass@host/path or a file path; the password is never logged.")
    grid_cell: str = Field(min_length=1, max_length=64, description="Grid cell the camera covers.")
    analysis_fps: float = Field(default=1.0, gt=0, le=30, description="Frames per second to analyse.")
    transport: Literal["tcp", "udp"] = "tcp"
    location: str | None = Field(default=None, max_length=200, description="Human description of the place.")
    detector: DetectorChoice = DetectorChoice()
    watchdog: Watchdog = Watchdog()
    zones: tuple[Zone, ...] = Field(default=(), description="The camera's zones; each ``type`` must be a "
                                    "registered zone type (no_parking, no_vending, keep_clear, ...).")

    @field_validator("zones")
    @classmethod
    def _unique_zone_ids(cls, zones: tuple[ZoneBase, ...]) -> tuple[ZoneBase, ...]:
        first: dict[str, int] = {}
        for i, z in enumerate(zones):
            if z.id in first:
                raise DuplicateIdError("zone", z.id, first[z.id], i)
            first[z.id] = i
        return zones


class SiteInfo(Strict):
    name: str = Field(min_length=1, max_length=100)
    timezone: str = Field(default="Asia/Shanghai", description="IANA time zone for zone schedules.")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", value):
            raise ValueError(f"not a time zone name: {value!r}")
        try:
            ZoneInfo(value)  # tzdata is packaged data, not I/O against the outside world
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class MqttTls(Strict):
    ca_file: str | None = Field(default=None, description="CA bundle that signs the broker certificate.")
    cert_file: str | None = Field(default=None, description="Client certificate, for mutual TLS.")
    key_file: str | None = Field(default=None, description="Client key, for mutual TLS.")
    insecure: bool = Field(default=False, description="Skip hostname verification (test brokers only).")


MqttRole = Literal["pipeline", "tickets", "verifier", "review"]
"""Who a connection is on the broker; each role has its own account and ACL (alerts/acl.py)."""


class MqttAccount(Strict):
    """One role's broker account."""

    username: str = Field(min_length=1, max_length=200)
    password: SecretStr | None = Field(default=None, description="The account's password; never logged.")


class MqttConfig(Strict):
    """The broker incidents, health and verification requests travel through."""

    host: str = Field(default="localhost", min_length=1, max_length=255)
    port: int = Field(default=1883, ge=1, le=65_535)
    username: str | None = Field(default=None, max_length=200)
    password: SecretStr | None = Field(default=None, description="Broker password; never logged.")
    tls: MqttTls | None = Field(default=None, description="Absent means plain TCP.")
    topic_prefix: str = Field(default="patrol/v1", pattern=r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$",
                              description="Versioned topic root; incidents go to {prefix}/incidents/...")
    client_id: str = Field(default="patrol", pattern=_ID, description="Base client id; roles append to it.")
    keepalive_s: int = Field(default=30, ge=5, le=3_600)
    max_payload_bytes: int = Field(default=65_536, ge=1_024, le=10_000_000,
                                   description="Larger incoming messages are dead-lettered.")
    accounts: dict[MqttRole, MqttAccount] = Field(
        default_factory=dict,
        description="One broker account per role (pipeline, tickets, verifier, review), each limited by the "
                    "broker's ACL to its own topics (`patrol broker acl`); a role without one uses "
                    "username/password.")

    def for_role(self, role: MqttRole) -> MqttConfig:
        """This config with ``role``'s account as the credentials (unchanged when it has none)."""
        account = self.accounts.get(role)
        if account is None:
            return self
        return self.model_copy(update={"username": account.username, "password": account.password})


class DatabaseConfig(Strict):
    url: str = Field(default="sqlite:///var/data/patrol.db", min_length=1,
                     description="SQLAlchemy URL: sqlite:///file or postgresql+psycopg://user@host/db.")


class TicketsConfig(Strict):
    """Routing, deadlines and merging of the ticket service."""

    routes: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="grid cell -> incident type -> department; '*' matches any cell or type.")
    default_department: str = Field(default="urban_management", min_length=1, max_length=64)
    deadlines_s: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: {"illegal_parking": 1_800.0, "street_stall": 3_600.0,
                                 "fallen_branch": 7_200.0, "obstruction": 3_600.0,
                                 "camera_offline": 86_400.0},
        description="Seconds from the incident's start to the disposal deadline, per incident type.")
    default_deadline_s: float = Field(default=86_400.0, gt=0)
    merge_window_s: float = Field(default=1_800.0, ge=0, le=7 * 86_400,
                                  description="An incident at the same place within this many seconds of "
                                              "the open ticket's last incident joins it.")
    merge_distance: float = Field(default=0.1, ge=0, le=2,
                                  description="Greatest normalised distance between two locations that "
                                              "counts as the same place.")
    verify_duration_s: float = Field(default=4.0, gt=0, le=120,
                                     description="Seconds of frames the verifier re-checks after disposal.")
    verify_timeout_s: float = Field(default=300.0, gt=0, le=86_400,
                                    description="A disposed ticket without a verification result this long "
                                                "gets a new verify request.")
    held_timeout_s: float = Field(default=600.0, gt=0, le=7 * 86_400,
                                  description="An event held this long for an earlier one of its incident that "
                                              "never came is dead-lettered with the reason.")
    gap_patience_s: float = Field(default=5.0, gt=0, le=3_600,
                                  description="An event held this long for an earlier one asks the pipelines "
                                              "to re-send (a replay request).")
    gap_requests: int = Field(default=3, ge=0, le=100,
                              description="Most replay requests one incident's gap may cause per "
                                          "gap_request_window_s.")
    gap_request_window_s: float = Field(default=600.0, gt=0, le=86_400,
                                        description="The window gap_requests counts over.")
    # --- loop: category codes for the city platform (issue 15)
    category_codes: dict[str, Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=lambda: {"illegal_parking": "0510", "street_stall": "0502", "obstruction": "0504",
                                 "fallen_branch": "0107", "camera_offline": "9901"},
        description="Incident type -> the city platform's event category code (GB/T 30428 style); the "
                    "defaults are placeholders, to be set per city. A type without one carries none.")
    archive_verified: bool = Field(default=False, description=(
        "A ticket the verifier finds gone is archived at once (the loop's last step); off: it stays "
        "'verified' until 'patrol tickets transition ID archived'."))

    @field_validator("routes")
    @classmethod
    def _route_types(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for cell, by_type in value.items():
            unknown = sorted(set(by_type) - set(INCIDENT_TYPES) - {"*"})
            if unknown:
                raise ValueError(f"grid cell {cell!r}: unknown incident type(s) {unknown}; "
                                 f"use one of {list(INCIDENT_TYPES)} or '*'")
        return value

    @field_validator("deadlines_s", "category_codes")
    @classmethod
    def _deadline_types(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(INCIDENT_TYPES))
        if unknown:
            raise ValueError(f"unknown incident type(s) {unknown}; use one of {list(INCIDENT_TYPES)}")
        return value


class EvidenceRetention(Strict):
    max_age_days: float = Field(default=30.0, gt=0, le=3_650,
                                description="Evidence of closed tickets older than this is deleted.")
    max_total_mb: float = Field(default=10_240.0, gt=0, le=10_000_000,
                                description="Above this total, the oldest evidence of closed tickets goes first.")
    interval_s: float = Field(default=3_600.0, ge=0, le=7 * 86_400, description=(
        "Seconds between two retention runs inside patrol run, the ticket service and the review page "
        "(first run one interval after start); 0 turns the schedule off (then run 'patrol review retention')."))


class EvidenceConfig(Strict):
    """Where incident evidence (clips, snapshots, manifests) is written and how long it stays."""

    dir: str = Field(default="var/evidence", min_length=1, description="Root folder of the evidence store.")
    pre_roll_s: float = Field(default=5.0, ge=0, le=120, description="Seconds of clip before the incident.")
    post_roll_s: float = Field(default=5.0, ge=0, le=120, description="Seconds of clip after the incident.")
    clip_queue: int = Field(default=8, ge=1, le=1_000,
                            description="Clips waiting to be written; more are dropped and counted.")
    retention: EvidenceRetention = EvidenceRetention()


class ReviewConfig(Strict):
    """The operators' review page."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    port: int = Field(default=8080, ge=1, le=65_535)
    secret_file: str = Field(default="var/review-secret",
                             description="File holding the session signing key; created (mode 600) if absent.")
    session_max_age_s: int = Field(default=12 * 3_600, ge=60, le=30 * 86_400)
    secure_cookies: bool = Field(default=False, description="Send the session cookie over HTTPS only "
                                 "(set when the page is served behind TLS).")
    metrics_token_file: str | None = Field(default=None, description="File holding a bearer token that lets "
                                           "a Prometheus scraper read /metrics without logging in.")
    language: Literal["zh-CN", "en"] = Field(default="en", description="Language of the review page "
                                             "(each user may switch with ?lang=); zh-CN: Simplified Chinese.")


class SiteConfig(Strict):
    """One site: its cameras and the services they report to."""

    version: Literal[1] = 1
    site: SiteInfo
    cameras: tuple[Camera, ...] = Field(min_length=1)
    mqtt: MqttConfig = MqttConfig()
    database: DatabaseConfig = DatabaseConfig()
    tickets: TicketsConfig = TicketsConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    review: ReviewConfig = ReviewConfig()

    @field_validator("cameras")
    @classmethod
    def _unique_camera_ids(cls, cameras: tuple[Camera, ...]) -> tuple[Camera, ...]:
        first: dict[str, int] = {}
        for i, cam in enumerate(cameras):
            if cam.id in first:
                raise DuplicateIdError("camera", cam.id, first[cam.id], i)
            first[cam.id] = i
        return cameras

    def camera(self, camera_id: str) -> Camera:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(camera_id)
