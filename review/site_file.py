"""Change one camera's zones in a site YAML file: validated as ``patrol check-config`` validates,
shown as a diff, written with a backup and re-validated after writing.

Comments: ruamel.yaml is not a dependency, so the file is not round-tripped. Instead the camera's
``zones:`` block is located with PyYAML's node positions and only that block is replaced: comments and
formatting everywhere else in the file stay as they were, and so does the text of every zone the
edit left unchanged (comments between unchanged zones included); comments inside a changed zone are
lost (they stay in the backup). Where the block cannot be spliced (the camera had no ``zones:`` key,
or a flow-style one such as ``zones: []``), the whole file is written by the YAML dumper and its
comments are only in the backup; :attr:`Change.kept_comments` says which.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from camera_config.loader import load_config
from camera_config.schema import SiteConfig
from camera_config.yaml_safe import parse_yaml
from core.errors import ConfigError


class _FlowLeaves(yaml.SafeDumper):
    """Block mappings, but lists of scalars or of scalar pairs in flow style (``[[0.1, 0.2], ...]``),
    as the site files write polygons."""


def _represent_list(dumper: yaml.SafeDumper, data: Any) -> yaml.Node:
    flat = all(not isinstance(v, dict | list) or
               (isinstance(v, list) and all(not isinstance(w, dict | list) for w in v)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat and bool(data))


_FlowLeaves.add_representer(list, _represent_list)
_FlowLeaves.add_representer(tuple, _represent_list)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_FlowLeaves, sort_keys=False, allow_unicode=True, width=110)


@dataclass(frozen=True)
class Change:
    path: Path
    old_text: str
    new_text: str
    kept_comments: bool

    @property
    def diff(self) -> str:
        name = self.path.name
        return "".join(difflib.unified_diff(self.old_text.splitlines(keepends=True),
                                            self.new_text.splitlines(keepends=True),
                                            fromfile=f"a/{name}", tofile=f"b/{name}"))


def read_site(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its parsed document (secrets unresolved, as written)."""
    text = path.read_text(encoding="utf-8")
    raw = parse_yaml(text)
    if not isinstance(raw, dict) or not isinstance(raw.get("cameras"), list):
        raise ConfigError(str(path), [f"{path}: site: (top level): no 'cameras' list"])
    return text, raw


def camera_index(raw: dict[str, Any], camera_id: str) -> int:
    for i, cam in enumerate(raw["cameras"]):
        if isinstance(cam, dict) and cam.get("id") == camera_id:
            return i
    raise KeyError(camera_id)


def _content_end(node: yaml.Node) -> int:
    """Where the last character of ``node``'s own text ends (a block collection's end mark lies at
    the next token, past trailing comments)."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _content_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _content_end(node.value[-1])
    return int(node.end_mark.index)


def _zones_node(text: str, index: int) -> yaml.SequenceNode | None:
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return None
    cams = next((v for k, v in root.value if k.value == "cameras"), None)
    if not isinstance(cams, yaml.SequenceNode) or index >= len(cams.value):
        return None
    cam = cams.value[index]
    if not isinstance(cam, yaml.MappingNode):
        return None
    zones = next((v for k, v in cam.value if k.value == "zones"), None)
    if isinstance(zones, yaml.SequenceNode) and not zones.flow_style and zones.value:
        return zones
    return None


def replace_zones(path: Path, camera_id: str, zones: list[dict[str, Any]]) -> Change:
    """The file's new text with ``camera_id``'s zones replaced by ``zones`` (nothing written)."""
    text, raw = read_site(path)
    index = camera_index(raw, camera_id)
    wanted = {**raw, "cameras": [*raw["cameras"]]}
    wanted["cameras"][index] = {**raw["cameras"][index], "zones": zones}
    node = _zones_node(text, index) if zones else None
    if node is not None:
        column = node.start_mark.column
        before = raw["cameras"][index].get("zones") or []
        block, last_kept = "", False
        for i, zone in enumerate(zones):
            kept = i < len(before) and i < len(node.value) and before[i] == zone
            if kept and last_kept:  # the original text from the previous zone on, comments between included
                block += text[_content_end(node.value[i - 1]):_content_end(node.value[i])]
            else:
                block += ("\n" + " " * column) if i else ""
                block += ("- " + text[node.value[i].start_mark.index:_content_end(node.value[i])] if kept
                          else dump_yaml([zone]).rstrip("\n").replace("\n", "\n" + " " * column))
            last_kept = kept
        spliced = text[:node.start_mark.index] + block + text[_content_end(node):]
        try:
            if parse_yaml(spliced) == wanted:
                return Change(path, text, spliced, kept_comments=True)
        except yaml.YAMLError:
            pass
    return Change(path, text, dump_yaml(wanted), kept_comments=False)


def validate_text(path: Path, text: str) -> SiteConfig:
    """Validate ``text`` exactly as ``patrol check-config`` would validate it at ``path`` (a temporary
    file beside it, so relative paths and ``*_file`` secrets resolve alike). Raises ConfigError whose
    problems name ``path``, not the temporary file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.check-", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            return load_config(tmp)
        except ConfigError as exc:
            problems = [p.replace(tmp, str(path)) for p in exc.problems]
            raise ConfigError(str(path), problems) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_with_backup(change: Change, now: datetime | None = None) -> Path:
    """Back the file up to ``FILE.bak-<UTC time>``, replace it atomically with the new text and
    validate the written file; if that fails the backup is put back and the ConfigError raised."""
    path = change.path
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    shutil.copy2(path, backup)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.new-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(change.new_text)
            fh.flush()
            os.fsync(fh.fileno())
        shutil.copymode(backup, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        load_config(path)
    except ConfigError:
        shutil.copy2(backup, path)
        raise
    return backup
