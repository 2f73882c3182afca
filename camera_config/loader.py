"""Read a site YAML file into a validated :class:`SiteConfig`, or explain every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from camera_config.schema import DuplicateIdError, SiteConfig
from core.errors import ConfigError


def _loc_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _camera_label(raw: Any, loc: tuple[int | str, ...]) -> str:
    """Name the camera an error sits under: its id if it has one, else its index."""
    if len(loc) >= 2 and loc[0] == "cameras" and isinstance(loc[1], int):
        index = loc[1]
        cams = raw.get("cameras") if isinstance(raw, dict) else None
        if isinstance(cams, list) and index < len(cams) and isinstance(cams[index], dict):
            cam_id = cams[index].get("id")
            if isinstance(cam_id, str):
                return f"camera {cam_id!r}"
        return f"camera #{index}"
    return "site"


def _point_at_duplicate(loc: tuple[int | str, ...], err: Any) -> tuple[int | str, ...]:
    """Move a duplicate-id error from the list to the offending item's ``id`` field."""
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, DuplicateIdError):
        return (*loc, cause.second, "id")
    return loc


def _is_consequence(err: Any, loc: tuple[int | str, ...], all_locs: list[tuple[int | str, ...]]) -> bool:
    """A "too short" error on a list whose own item failed is noise: the item error says it all."""
    return err["type"] == "too_short" and any(len(o) > len(loc) and o[: len(loc)] == loc for o in all_locs)


def format_validation_error(path: str, raw: Any, exc: ValidationError) -> list[str]:
    errors = exc.errors(include_url=False)
    locs = [tuple(e["loc"]) for e in errors]
    problems = []
    for err, loc in zip(errors, locs, strict=True):
        if _is_consequence(err, loc, locs):
            continue
        loc = _point_at_duplicate(loc, err)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}"
        problems.append(f"{path}: {_camera_label(raw, loc)}: {_loc_text(loc)}: {message}")
    return problems


def parse_config(raw: Any, path: str = "<memory>") -> SiteConfig:
    if not isinstance(raw, dict):
        raise ConfigError(path, [f"{path}: site: (top level): expected a mapping, got {type(raw).__name__}"])
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(path, format_validation_error(path, raw, exc)) from exc


def load_config(path: str | Path) -> SiteConfig:
    """Load and validate ``path``. Raises :class:`ConfigError` naming file, camera and field."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(name, [f"{name}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(name, [f"{name}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(name, [f"{name}: not valid YAML{where}: {problem}"]) from exc
    return parse_config(raw, name)
