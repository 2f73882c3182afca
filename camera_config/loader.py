"""Read a site YAML file into a validated :class:`SiteConfig`, or explain every problem."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from camera_config.schema import DuplicateIdError, SiteConfig
from camera_config.secrets import register_config_secrets, resolve_secrets
from camera_config.yaml_safe import MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES, YamlLimitError, parse_yaml
from core.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_NODES", "format_validation_error", "load_config", "parse_config"]


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


def _finite_input(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


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
        elif err["type"] == "finite_number":
            message = f"not a finite number (got {_finite_input(err.get('input'))})"
        problems.append(f"{path}: {_camera_label(raw, loc)}: {_loc_text(loc)}: {message}")
    return problems


def parse_config(raw: Any, path: str = "<memory>", *, base_dir: Path | None = None) -> SiteConfig:
    """Validate ``raw`` (a parsed YAML document) after resolving its secrets (``${VAR}`` and ``*_file``
    keys, see :mod:`camera_config.secrets`); every secret it holds is then redacted from all output."""
    if not isinstance(raw, dict):
        raise ConfigError(path, [f"{path}: site: (top level): expected a mapping, got {type(raw).__name__}"])
    raw, problems = resolve_secrets(raw, base_dir or Path.cwd())
    if problems:
        raise ConfigError(path, [f"{path}: {_camera_label(raw, p.loc)}: {_loc_text(p.loc)}: {p.message}"
                                 for p in problems])
    try:
        cfg = SiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(path, format_validation_error(path, raw, exc)) from exc
    register_config_secrets(cfg)
    return cfg


def load_config(path: str | Path) -> SiteConfig:
    """Load and validate ``path``. Raises :class:`ConfigError` naming file, camera and field.

    A file over :data:`MAX_CONFIG_BYTES` is refused before it is read, a document over
    :data:`MAX_NODES` nodes (aliases counted where they expand) or nested deeper than
    :data:`MAX_DEPTH` before it is built, and a key given twice in one mapping with both lines."""
    name = str(path)
    text = _read_text(Path(path), name)
    try:
        raw = parse_yaml(text)
    except YamlLimitError as exc:
        where = f"{_loc_text(exc.loc)}: " if exc.loc else ""
        raise ConfigError(name, [f"{name}: {where}{exc}"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and cmark:
            problem += f" ({context} at line {cmark.line + 1}, column {cmark.column + 1})"
        raise ConfigError(name, [f"{name}: not valid YAML{where}: {problem}"]) from exc
    return parse_config(raw, name, base_dir=Path(path).parent)


def _read_text(path: Path, name: str) -> str:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(name, [f"{name}: file is {size / 1e6:.1f} MB, more than the "
                                         f"{MAX_CONFIG_BYTES / 1e6:g} MB a site config may have"])
            data = fh.read(MAX_CONFIG_BYTES + 1)  # a pipe or a growing file says nothing true in st_size
    except OSError as exc:
        raise ConfigError(name, [f"{name}: cannot read: {exc.strerror or exc}"]) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(name, [f"{name}: more than the {MAX_CONFIG_BYTES / 1e6:g} MB a site config may have"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, [f"{name}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from exc
