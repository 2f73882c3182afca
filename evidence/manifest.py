"""The evidence manifest: what each file is (sha256), and what produced it.

One JSON file per incident, rewritten when the clip lands. It names the files with their sha256 and
size, the detector model and its sha256, the rule and the thresholds in force, the zone polygon, the
config version (hash of the validated site config, secrets masked) and the times, so the evidence
can be checked and explained later.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camera_config.schema import SiteConfig
from core.events import IncidentEvent
from evidence.clip import sha256_file
from evidence.errors import EvidenceError

MANIFEST_SCHEMA = "bright-patrol/evidence-manifest/1"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    sha256: str


def config_version(config: SiteConfig) -> str:
    """``sha256:<hex>`` of the validated config as canonical JSON; stream passwords are masked first."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def file_entries(folder: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        path = folder / name
        if path.is_file():
            out[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out


def build_manifest(event: IncidentEvent, *, files: dict[str, dict[str, Any]], model: ModelInfo | None,
                   config_version: str | None, polygon: Sequence[tuple[float, float]] | None,
                   snapshot_pts: float | None, clip: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": MANIFEST_SCHEMA,
        "incident_id": event.incident_id,
        "camera_id": event.camera_id,
        "grid_cell": event.grid_cell,
        "type": event.type,
        "zone_id": event.zone_id,
        "times": {
            "started_at": event.started_at,
            "opened_at": event.event_at,
            "snapshot_pts": snapshot_pts,
            "written_at": time.time(),
        },
        "files": files,
        "model": {"name": model.name, "sha256": model.sha256} if model else None,
        "rule": {
            "type": event.type,
            "zone_id": event.zone_id,
            "thresholds": dict(event.evidence.thresholds),
            "durations": dict(event.evidence.durations),
            "signals": dict(event.evidence.signals),
        },
        "boxes": [b.model_dump(mode="json") for b in event.evidence.boxes],
        "zone_polygon": [list(p) for p in polygon] if polygon else None,
        "config_version": config_version,
        "clip": clip,
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    try:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EvidenceError(f"{path}: cannot write manifest: {exc.strerror or exc}") from exc


def verify_manifest(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Names of listed files that are missing or whose sha256 no longer matches."""
    bad = []
    for name, info in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != info.get("sha256"):
            bad.append(name)
    return bad
