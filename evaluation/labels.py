"""Label files: what a recorded clip should make the rules report, and when nothing may fire.

A label file is YAML, one clip and one camera::

    version: 1
    clip: footage/vehicle_counting_input_video.mp4   # registered asset path (patrol assets list) or a path
                                                       # relative to this file
    clip_sha256: 3f0c...                               # optional pin; eval refuses a different file
    camera: kerb_street                                # camera id inside the config
    config:                                            # a site config, inline, or a path to one
      site: {name: labels}
      cameras: [{id: kerb_street, url: file, grid_cell: G1, zones: [...]}]
    recorded_at: 2025-06-15T15:06:40Z   # optional: wall time of the first frame (zone schedules)
    exhaustive: true          # every incident not matched to `expected` is a false positive
    expected:                 # incidents that must open
      - type: illegal_parking
        zone: kerb_left
        start: [0, 40]        # stream seconds: [problem visible, latest acceptable opening]
        end: [30, null]       # optional: window for the close; null upper bound = may stay open
        where: {box: [280, 120, 330, 170], units: px}   # optional: where the problem is (see below)
        note: silver hatchback at the left kerb, parked all clip
    quiet:                    # spans where nothing (of these types / zones) may open
      - {from: 0, to: 37.7, types: [street_stall]}

Times are stream seconds from the start of the clip. An incident *opens* at the stream time of
its ``opened`` event; its start delay is that time minus the label's ``start[0]``. With
``exhaustive: false`` (labels exported from operator verdicts) only incidents that open inside a
quiet span, and second incidents for one expected problem, count as false positives; others are
reported as unlabelled. Matching rules: :mod:`evaluation.matching`.

**Place.** ``where`` is a box ``[x1, y1, x2, y2]`` around the problem (the parked car, the
dropped bag) with its units said explicitly: ``px`` are pixels of the clip's decoded frames
(``x`` right, ``y`` down, origin top left), ``norm`` are fractions of the frame's width and height,
the units of an incident's ``location``. There is no guessing from the numbers: ``units`` is
required. A pixel box is turned into a normalised one with the clip's frame size, read from the
clip's first decoded frame when the file is validated (the replay decodes the same frames), and
must lie inside the frame; a normalised box inside ``[0, 1]``. Draw the box around the whole
object, down to where it touches the ground and a little below: an incident's place is the
object's ground point (the bottom centre of its box), which must fall inside. Labels without
``where`` match on type, zone and time alone, as before. ``where`` may also name the problem's
ground point (``point: [x, y]``, same units, inside the box); place errors are measured to it, and
by default to the bottom centre of the box.

**Validation.** :func:`validate_label_files` checks every file (YAML, schema, clip present and
pinned checksum, config valid, camera and zones known, ``where`` inside the frame and overlapping
its zone) and reports
every problem of every file, each with file and field, before anything is replayed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import av
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from camera_config.loader import load_config, parse_config
from camera_config.schema import Camera, SiteConfig
from core.assets import AssetCache, data_assets
from core.errors import AssetError, ConfigError, PatrolError
from core.events import IncidentType

Seconds = Annotated[float, Field(ge=0, le=86_400)]


class LabelError(PatrolError):
    """A label file is unreadable or inconsistent; the message names the file and the field.

    ``problems`` holds one line per problem (several when a file, or several files, had more).
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else message.splitlines()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    """A closed interval of stream seconds; ``hi`` None means "until the end of the clip"."""

    lo: Seconds
    hi: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if len(value) != 2:
                raise ValueError(f"expected [from, to], got {len(value)} value(s)")
            return {"lo": value[0], "hi": value[1]}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.hi is not None and self.hi < self.lo:
            raise ValueError(f"window ends ({self.hi}) before it starts ({self.lo})")
        return self

    def contains(self, t: float) -> bool:
        return self.lo <= t and (self.hi is None or t <= self.hi)

    def as_list(self) -> list[float | None]:
        return [self.lo, self.hi]


Box = tuple[float, float, float, float]


class Where(_Strict):
    """Where a labelled problem is: a box ``[x1, y1, x2, y2]`` in pixels (``px``) or in fractions
    of the frame (``norm``), and optionally the problem's ground point in the same units."""

    box: Box = Field(description="[x1, y1, x2, y2], x right and y down from the top left corner.")
    units: Literal["px", "norm"] = Field(description="px: pixels of the clip's frames; norm: fractions "
                                                      "of its width and height (incident locations).")
    point: tuple[float, float] | None = Field(
        default=None, description="The problem's ground point (place errors are measured to it); "
                                  "default: the bottom centre of the box.")

    @model_validator(mode="after")
    def _ordered(self) -> Where:
        x1, y1, x2, y2 = self.box
        if min(self.box) < 0:
            raise ValueError(f"box {list(self.box)} has a negative coordinate")
        if not (x1 < x2 and y1 < y2):
            raise ValueError(f"box {list(self.box)} is not [x1, y1, x2, y2] with x1 < x2 and y1 < y2")
        if self.units == "norm" and max(self.box) > 1:
            raise ValueError(f"box {list(self.box)} is in units 'norm' but goes past 1 (pixels? say units: px)")
        if self.point is not None and not (x1 <= self.point[0] <= x2 and y1 <= self.point[1] <= y2):
            raise ValueError(f"point {list(self.point)} is outside box {list(self.box)}")
        return self

    @property
    def ground(self) -> tuple[float, float]:
        """The labelled ground point: ``point``, else the bottom centre of the box."""
        if self.point is not None:
            return self.point
        return ((self.box[0] + self.box[2]) / 2, self.box[3])

    def outside(self, frame_size: tuple[int, int]) -> str | None:
        """Why the box is not inside a frame of ``(width, height)`` pixels, or None if it is."""
        if self.units == "norm":
            return None
        w, h = frame_size
        if self.box[2] > w or self.box[3] > h:
            return f"box {list(self.box)} (px) goes past the clip's {w}x{h} frame"
        return None

    def normalised(self, frame_size: tuple[int, int] | None) -> Where:
        """The same box in ``norm`` units; a pixel box needs the clip's ``(width, height)``."""
        if self.units == "norm":
            return self
        if frame_size is None:
            raise LabelError(f"where box {list(self.box)} is in pixels and the clip's frame size is unknown")
        w, h = frame_size
        x1, y1, x2, y2 = self.box
        point = None if self.point is None else (self.point[0] / w, self.point[1] / h)
        return Where(box=(x1 / w, y1 / h, x2 / w, y2 / h), units="norm", point=point)


class Expected(_Strict):
    """One incident that must open in ``start`` (and, if given, close in ``end``), at ``where``."""

    type: IncidentType
    zone: str = Field(min_length=1, max_length=64)
    start: Window = Field(description="[problem visible, latest acceptable opening], stream seconds.")
    end: Window | None = Field(default=None, description="Window for the close; null upper bound = may stay open.")
    where: Where | None = Field(default=None, description="Box around the problem; an incident's place "
                                                           "must fall inside. Absent: any place.")
    note: str | None = Field(default=None, max_length=500)

    def normalised(self, frame_size: tuple[int, int] | None) -> Expected:
        """This expectation with ``where`` in ``norm`` units (unchanged when already so or absent)."""
        if self.where is None or self.where.units == "norm":
            return self
        return self.model_copy(update={"where": self.where.normalised(frame_size)})


class Quiet(_Strict):
    """A span where no incident (optionally: of these types, in these zones) may open."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: Seconds = Field(alias="from")
    stop: Seconds | None = Field(default=None, alias="to", description="null = until the end of the clip.")
    types: tuple[IncidentType, ...] | None = None
    zones: tuple[str, ...] | None = None
    note: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> Quiet:
        if self.stop is not None and self.stop < self.start:
            raise ValueError(f"quiet span ends ({self.stop}) before it starts ({self.start})")
        return self

    def covers(self, t: float, type_: str, zone: str | None) -> bool:
        if t < self.start or (self.stop is not None and t > self.stop):
            return False
        if self.types is not None and type_ not in self.types:
            return False
        return not (self.zones is not None and zone not in self.zones)


class LabelDoc(_Strict):
    """The raw YAML document, validated; the config is resolved by :func:`load_labels`."""

    version: Literal[1] = 1
    clip: str = Field(min_length=1, description="Asset name (e.g. footage/x.mp4) or path relative to the file.")
    clip_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    camera: str = Field(min_length=1)
    config: str | dict[str, Any] = Field(description="Site config: a path relative to this file, or inline.")
    recorded_at: datetime | None = Field(default=None, description="Wall time of the clip's first frame "
                                         "(for zone schedules); absent: 1970-01-01T00:00Z.")
    exhaustive: bool = True
    expected: tuple[Expected, ...] = ()
    quiet: tuple[Quiet, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class ClipLabels:
    """A label file resolved: the clip on disk, its camera config, and the expectations."""

    path: Path
    clip: Path
    site: SiteConfig
    camera: Camera
    doc: LabelDoc
    frame_size: tuple[int, int] | None = None
    """(width, height) of the clip's decoded frames; None when the clip was not opened."""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def wall_start(self) -> float:
        return self.doc.recorded_at.timestamp() if self.doc.recorded_at is not None else 0.0

    @property
    def expected(self) -> tuple[Expected, ...]:
        """The expectations with every ``where`` in normalised units (what matching compares)."""
        if self.frame_size is None:
            return self.doc.expected
        return tuple(e.normalised(self.frame_size) for e in self.doc.expected)

    @property
    def quiet(self) -> tuple[Quiet, ...]:
        return self.doc.quiet

    @property
    def exhaustive(self) -> bool:
        return self.doc.exhaustive


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def resolve_clip(name: str, label_dir: Path) -> Path:
    """Find a clip: a registered asset path (fetched into the asset cache and checked), a path
    relative to the label file, or an absolute path."""
    candidate = Path(name)
    if not candidate.is_absolute():
        asset = next((a for a in data_assets().values() if a.path == name), None)
        if asset is not None:
            try:
                return AssetCache().fetch(asset)
            except AssetError as exc:
                raise LabelError(f"clip {name!r}: {exc}") from exc
        candidate = label_dir / candidate
    if candidate.is_file():
        return candidate
    raise LabelError(f"clip {name!r} is neither a registered asset path (patrol assets list) nor a file "
                     f"({candidate} does not exist)")


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise LabelError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from exc


def _validation_text(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {err['loc'][-1]!r}"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def clip_frame_size(path: Path) -> tuple[int, int]:
    """(width, height) of the clip's first decoded video frame: the frames the replay analyses."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return frame.width, frame.height
    except (av.FFmpegError, OSError, IndexError) as exc:
        raise LabelError(f"clip {path}: cannot decode a video frame: {exc}") from exc
    raise LabelError(f"clip {path}: has no video frames")


def _problem(exc: PatrolError) -> list[str]:
    return getattr(exc, "problems", None) or str(exc).splitlines()


def parse_labels(raw: Any, path: Path, *, check_clip: bool = True) -> ClipLabels:
    """Validate a label document and resolve its clip and camera config.

    Raises :class:`LabelError` listing every problem found (``.problems``: one line each, naming
    the file and the field). Checks that depend on an earlier part (zones on the config, a pixel
    ``where`` on the clip's frame size) run once that part is valid.
    """
    if not isinstance(raw, dict):
        raise LabelError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        doc = LabelDoc.model_validate(raw)
    except ValidationError as exc:
        raise LabelError(_validation_text(path, exc)) from exc
    problems: list[str] = []
    camera: Camera | None = None
    site: SiteConfig | None = None
    try:
        site = _resolve_config(doc, path)
    except LabelError as exc:
        problems.extend(_problem(exc))
    if site is not None:
        try:
            camera = site.camera(doc.camera)
        except KeyError:
            known = ", ".join(c.id for c in site.cameras)
            problems.append(f"{path}: camera: no camera {doc.camera!r} in the config (has: {known})")
    if camera is not None:
        problems.extend(_zone_problems(doc, camera, path))
    clip = Path(doc.clip)
    frame_size: tuple[int, int] | None = None
    if check_clip:
        try:
            clip = resolve_clip(doc.clip, path.parent)
            if doc.clip_sha256 is not None:
                actual = sha256_file(clip)
                if actual != doc.clip_sha256:
                    raise LabelError(f"{path}: clip_sha256: {clip} has sha256 {actual}, the labels were made "
                                     f"for {doc.clip_sha256}")
            frame_size = clip_frame_size(clip)
        except LabelError as exc:
            problems.extend(p if p.startswith(f"{path}:") else f"{path}: clip: {p}" for p in _problem(exc))
    if frame_size is not None:
        problems.extend(_where_problems(doc, camera, frame_size, path))
    if problems:
        raise LabelError("\n".join(problems), problems)
    assert site is not None and camera is not None
    return ClipLabels(path=path, clip=clip, site=site, camera=camera, doc=doc, frame_size=frame_size)


def _where_problems(doc: LabelDoc, camera: Camera | None, frame_size: tuple[int, int], path: Path) -> list[str]:
    """A ``where`` box must lie inside the frame and overlap its zone (membership is tested at an
    incident's ground point, so a box wholly outside the zone could never be matched)."""
    from pipeline.zones import build_zone_mask

    zones = {z.id: z for z in camera.zones} if camera is not None else {}
    w, h = frame_size
    out = []
    for i, exp in enumerate(doc.expected):
        if exp.where is None:
            continue
        why = exp.where.outside(frame_size)
        if why:
            out.append(f"{path}: expected[{i}].where: {why}")
            continue
        zone = zones.get(exp.zone)
        if zone is None:
            continue
        x1, y1, x2, y2 = exp.where.normalised(frame_size).box
        if build_zone_mask(zone, w, h).overlap_frac((x1 * w, y1 * h, x2 * w, y2 * h)) == 0.0:
            out.append(f"{path}: expected[{i}].where: box {list(exp.where.box)} ({exp.where.units}) lies wholly "
                       f"outside zone {exp.zone!r}; no incident of that zone can be there")
    return out


def _zone_problems(doc: LabelDoc, camera: Camera, path: Path) -> list[str]:
    zone_ids = {z.id for z in camera.zones}
    has = ", ".join(sorted(zone_ids)) or "none"
    out = []
    for i, exp in enumerate(doc.expected):
        if exp.zone not in zone_ids:
            out.append(f"{path}: expected[{i}].zone: camera {camera.id!r} has no zone {exp.zone!r} (has: {has})")
    for i, q in enumerate(doc.quiet):
        for zone in q.zones or ():
            if zone not in zone_ids:
                out.append(f"{path}: quiet[{i}].zones: camera {camera.id!r} has no zone {zone!r} (has: {has})")
    return out


def _resolve_config(doc: LabelDoc, path: Path) -> SiteConfig:
    if isinstance(doc.config, str):
        cfg_path = path.parent / doc.config
        try:
            return load_config(cfg_path)
        except ConfigError as exc:
            raise LabelError(f"{path}: config: {'; '.join(exc.problems)}") from exc
    name = f"{path}#config"
    try:
        return parse_config(doc.config, name)
    except ConfigError as exc:
        raise LabelError("\n".join(exc.problems), list(exc.problems)) from exc


def load_labels(path: str | Path, *, check_clip: bool = True) -> ClipLabels:
    """Load one label file. Raises :class:`LabelError` naming the file and field."""
    p = Path(path)
    return parse_labels(read_yaml(p), p, check_clip=check_clip)


def validate_label_files(paths: Sequence[str | Path], *, check_clip: bool = True) -> list[ClipLabels]:
    """Load every label file, or raise one :class:`LabelError` with every problem of every file.

    ``patrol eval`` and ``patrol tune`` call this before replaying anything, so a typo in the last
    file is reported at once instead of after the replays of the others.
    """
    loaded: list[ClipLabels] = []
    problems: list[str] = []
    bad = 0
    for path in paths:
        try:
            loaded.append(load_labels(path, check_clip=check_clip))
        except LabelError as exc:
            bad += 1
            problems.extend(_problem(exc))
    if problems:
        head = f"{len(problems)} problem(s) in {bad} of {len(paths)} label file(s); nothing was replayed"
        raise LabelError("\n".join([head, *problems]), problems)
    return loaded


def dump_labels(doc: LabelDoc) -> str:
    """YAML text of a label document (used by export-labels)."""
    data = doc.model_dump(mode="json", by_alias=True, exclude_none=True)
    for exp in data.get("expected", []):
        exp["start"] = [exp["start"]["lo"], exp["start"].get("hi")]
        if "end" in exp:
            exp["end"] = [exp["end"]["lo"], exp["end"].get("hi")]
        if "where" in exp:
            exp["where"] = {k: list(v) if isinstance(v, list | tuple) else v for k, v in exp["where"].items()}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


__all__ = [
    "ClipLabels", "Expected", "LabelDoc", "LabelError", "Quiet", "Where", "Window", "clip_frame_size",
    "dump_labels", "load_labels", "parse_labels", "resolve_clip", "sha256_file", "validate_label_files",
]
