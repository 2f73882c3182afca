"""``patrol config apply PATCH``: write a reviewed ``patrol tune`` patch into the config files.

A patch (:func:`evaluation.tune.camera_patch`) names per camera its label files and per zone each
changed field as ``{old, new}``. Applying it, for each target file (``--to FILE``, or each
camera's label files; a label file whose ``config`` is a path sends the change to that site file):

1. every field's current value must equal the patch's ``old`` (the config has not moved since the
   patch was made; ``force`` skips this check), and every camera and zone must exist;
2. the changed document is validated by the site config's own schema (bounds included) — a label
   file's by the label schema too — before anything is written;
3. the original goes to ``FILE.bak-<UTC time>`` (never overwritten), then the new text replaces the
   file atomically.

Each change is made on the text, line by line, so comments and layout stay; the edited text is then
parsed again and must equal the intended document, else (flow-style zones, a nested field) the
document is written out by the YAML dumper, without its comments (the backup keeps them).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from camera_config.schema import SiteConfig
from core.errors import PatrolError


class PatchError(PatrolError):
    """A patch cannot be applied: malformed, stale (a field's value is not its ``old``), or the
    result is not a valid config. Names the patch, file, camera, zone and field."""


@dataclass
class Applied:
    """One file written: where, its backup, the changes made and whether comments were kept."""

    path: Path
    backup: Path
    changes: list[str] = field(default_factory=list)
    kept_comments: bool = True


Change = tuple[str, str, str, Any, Any]
"""(camera, zone, field path with dots, old, new)."""


def read_patch(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PatchError(f"{path}: cannot read the patch: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PatchError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("cameras"), dict):
        raise PatchError(f"{path}: not a `patrol tune` patch (no `cameras` mapping)")
    return raw


def changes_of(patch: Mapping[str, Any], where: str) -> dict[str, list[Change]]:
    """The patch's changes grouped by camera id, each checked for shape."""
    out: dict[str, list[Change]] = {}
    for cam, body in patch["cameras"].items():
        zones = (body or {}).get("zones") or {}
        if not isinstance(zones, dict):
            raise PatchError(f"{where}: cameras.{cam}.zones: expected a mapping of zone id -> fields")
        for zone, fields in zones.items():
            if not isinstance(fields, dict):
                raise PatchError(f"{where}: cameras.{cam}.zones.{zone}: expected field -> {{old, new}}")
            for name, change in fields.items():
                if not isinstance(change, dict) or set(change) != {"old", "new"}:
                    raise PatchError(f"{where}: cameras.{cam}.zones.{zone}.{name}: expected {{old, new}}, "
                                     f"got {change!r}")
                out.setdefault(str(cam), []).append((str(cam), str(zone), str(name), change["old"], change["new"]))
    return out


def _site_of(doc: Any, path: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The site config inside a document: the document itself (a site file), a label file's inline
    ``config``, or (None, path of the site file) when the label file names one."""
    if isinstance(doc, dict) and "cameras" in doc:
        return doc, None
    if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
        return doc["config"], None
    if isinstance(doc, dict) and isinstance(doc.get("config"), str):
        return None, (path.parent / doc["config"]).resolve()
    raise PatchError(f"{path}: neither a site config (`cameras`) nor a label file with a `config`")


def _load(path: Path) -> tuple[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        return text, yaml.safe_load(text)
    except OSError as exc:
        raise PatchError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PatchError(f"{path}: not valid YAML: {exc}") from exc


def _set_field(site: dict[str, Any], change: Change, path: Path, force: bool) -> None:
    cam_id, zone_id, name, old, new = change
    cams = [c for c in site.get("cameras") or [] if isinstance(c, dict) and c.get("id") == cam_id]
    if not cams:
        raise PatchError(f"{path}: no camera {cam_id!r} for the patch's change of {zone_id}.{name}")
    zones = [z for z in cams[0].get("zones") or [] if isinstance(z, dict) and z.get("id") == zone_id]
    if not zones:
        raise PatchError(f"{path}: camera {cam_id!r} has no zone {zone_id!r} (patch field {name})")
    node = zones[0]
    parts = name.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    current = node.get(parts[-1], _DEFAULT)
    if current is _DEFAULT:
        current = _schema_default(site, cam_id, zone_id, parts)
    if not force and current != old:
        raise PatchError(f"{path}: camera {cam_id!r} zone {zone_id!r} {name} is {current!r}, the patch expected "
                         f"{old!r} (the config changed since the patch was made; re-run patrol tune, or --force)")
    node[parts[-1]] = new


_DEFAULT = object()


def _schema_default(site: dict[str, Any], cam_id: str, zone_id: str, parts: Sequence[str]) -> Any:
    """The value the schema gives a field the file leaves out (the patch's ``old`` is that value)."""
    try:
        cfg = SiteConfig.model_validate(site)
    except ValidationError:
        return _DEFAULT
    zone: Any = next(z for z in cfg.camera(cam_id).zones if z.id == zone_id)
    for part in parts:
        zone = getattr(zone, part, None)
    return zone


def _validate(doc: Any, site: dict[str, Any], path: Path) -> None:
    try:
        SiteConfig.model_validate(site)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise PatchError(f"{path}: the patched config is not valid: {problems}; nothing written") from exc
    if site is not doc:  # a label file: the label schema as well (clip presence is not the patch's business)
        from evaluation.labels import LabelError, parse_labels

        try:
            parse_labels(doc, path, check_clip=False)
        except LabelError as exc:
            raise PatchError(f"{path}: the patched label file is not valid: {exc}; nothing written") from exc


# --- text edits that keep comments -----------------------------------------------------------------

_ID = r"-\s+id:\s*['\"]?{}['\"]?\s*(#.*)?$"


def _scalar(value: Any) -> str:
    return json.dumps(value)  # numbers, booleans and strings are valid YAML scalars this way


def _edit_text(text: str, changes: Sequence[Change]) -> str | None:
    """``text`` with each change made on its line (or a line added to the zone); None when the text
    does not have the block layout this needs."""
    lines = text.splitlines(keepends=True)
    for cam_id, zone_id, name, _old, new in changes:
        if "." in name:
            return None
        cam = next((i for i, ln in enumerate(lines) if re.search(_ID.format(re.escape(cam_id)), ln)), None)
        if cam is None:
            return None
        zone = next((i for i in range(cam + 1, len(lines))
                     if re.search(_ID.format(re.escape(zone_id)), lines[i])), None)
        if zone is None:
            return None
        dash = lines[zone].index("-")
        indent = " " * (len(lines[zone]) - len(lines[zone].lstrip(" -")))
        end = zone + 1
        while end < len(lines):
            ln = lines[end]
            body = ln.strip()
            if body and not body.startswith("#") and len(ln) - len(ln.lstrip(" ")) <= dash:
                break
            end += 1
        pattern = re.compile(rf"^({re.escape(indent)}{re.escape(name)}:\s*)([^#\n]*?)(\s*(#.*)?)$")
        for i in range(zone + 1, end):
            m = pattern.match(lines[i].rstrip("\n"))
            if m:
                nl = "\n" if lines[i].endswith("\n") else ""
                lines[i] = f"{m.group(1)}{_scalar(new)}{m.group(3)}{nl}"
                break
        else:
            lines.insert(zone + 1, f"{indent}{name}: {_scalar(new)}\n")
    return "".join(lines)


def _backup(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    shutil.copy2(path, backup)
    return backup


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.patch-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def plan(patch: Mapping[str, Any], where: str, targets: Sequence[Path] | None = None) -> dict[Path, list[Change]]:
    """Which file gets which changes: ``targets`` (every camera's changes go to each), else each
    camera's label files; a label file naming a site file sends its changes there."""
    by_cam = changes_of(patch, where)
    out: dict[Path, list[Change]] = {}
    for cam, changes in by_cam.items():
        files = [Path(p) for p in targets] if targets else \
            [Path(p) for p in (patch["cameras"][cam] or {}).get("labels") or []]
        if not files:
            raise PatchError(f"{where}: cameras.{cam}: no label files named; say where with --to FILE")
        for f in files:
            out.setdefault(f, []).extend(c for c in changes if c not in out.get(f, []))
    return out


def apply_patch(patch_path: Path, targets: Sequence[Path] | None = None, *, force: bool = False,
                dry_run: bool = False) -> list[Applied]:
    """Apply a patch (see the module doc); every file is checked before the first is written."""
    patch = read_patch(patch_path)
    staged: list[tuple[Path, str, list[Change], bool]] = []
    pending = plan(patch, str(patch_path), targets)
    seen: set[Path] = set()
    while pending:
        path, changes = pending.popitem()
        text, doc = _load(path)
        site, elsewhere = _site_of(doc, path)
        if elsewhere is not None:
            pending.setdefault(elsewhere, []).extend(changes)
            continue
        if path in seen:
            raise PatchError(f"{path}: named twice by the patch")
        seen.add(path)
        assert site is not None
        wanted_doc = copy.deepcopy(doc)
        wanted_site, _ = _site_of(wanted_doc, path)
        assert wanted_site is not None
        relevant = [c for c in changes if any(isinstance(cam, dict) and cam.get("id") == c[0]
                                              for cam in wanted_site.get("cameras") or [])]
        if targets and not relevant:
            continue  # --to FILE that has none of the patch's cameras
        problems = []
        for change in relevant if targets else changes:
            try:
                _set_field(wanted_site, change, path, force)
            except PatchError as exc:
                problems.append(str(exc))
        if problems:
            raise PatchError("; ".join(problems) + "; nothing written")
        _validate(wanted_doc, wanted_site, path)
        edited = _edit_text(text, relevant if targets else changes)
        kept = edited is not None and yaml.safe_load(edited) == wanted_doc
        new_text = edited if kept and edited is not None else yaml.safe_dump(wanted_doc, sort_keys=False,
                                                                              allow_unicode=True)
        staged.append((path, new_text, relevant if targets else changes, kept))
    out = []
    for path, new_text, changes, kept in staged:
        backup = path if dry_run else _backup(path)
        if not dry_run:
            _write(path, new_text)
        out.append(Applied(path, backup, [f"{c}/{z} {n}: {o!r} -> {v!r}" for c, z, n, o, v in changes], kept))
    return out
