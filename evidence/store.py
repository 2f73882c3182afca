"""The evidence store: one folder per incident under one root, the only place files are served from.

Layout: ``<root>/<incident_id>/{clip.mp4, snapshot.jpg, frame.jpg, manifest.json}``. Incident ids are
checked against a strict pattern before they become folder names, and every path asked for from
outside (the review page) goes through :meth:`EvidenceStore.resolve`, which refuses absolute paths,
``..`` parts, links and anything that resolves outside the root.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from evidence.errors import EvidenceError, UnsafePathError

CLIP = "clip.mp4"
SNAPSHOT = "snapshot.jpg"
FRAME = "frame.jpg"
MANIFEST = "manifest.json"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{7,79}$")
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


@dataclass(frozen=True, slots=True)
class EvidenceEntry:
    """One incident's evidence folder, as retention sees it."""

    incident_id: str
    path: Path
    created: float
    """Unix time the evidence is dated by: the incident's opening time from the manifest, else mtime."""
    size_bytes: int


class EvidenceStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EvidenceError(f"evidence store {root}: cannot create: {exc.strerror or exc}") from exc

    def incident_dir(self, incident_id: str) -> Path:
        if not _SAFE_ID.fullmatch(incident_id) or ".." in incident_id:
            raise EvidenceError(f"incident id {incident_id!r} is not a safe folder name "
                                "(8-80 of A-Z a-z 0-9 _ . : -, no '..')")
        return self.root / incident_id

    def links(self, incident_id: str) -> dict[str, str]:
        """Store-relative paths of an incident's evidence, known before the files exist."""
        self.incident_dir(incident_id)
        return {kind: f"{incident_id}/{name}" for kind, name in
                (("clip", CLIP), ("snapshot", SNAPSHOT), ("frame", FRAME), ("manifest", MANIFEST))}

    def resolve(self, relpath: str) -> Path:
        """Map a store-relative path to an existing file inside the store, or raise UnsafePathError."""
        if not relpath or "\x00" in relpath or "\\" in relpath:
            raise UnsafePathError(f"evidence path {relpath!r}: empty or has forbidden characters")
        pure = PurePosixPath(relpath)
        if pure.is_absolute() or any(part in ("", ".", "..") or not _SAFE_PART.fullmatch(part)
                                     for part in relpath.split("/")):
            raise UnsafePathError(f"evidence path {relpath!r}: must be relative, without '.' or '..' parts")
        candidate = self.root.joinpath(*pure.parts)
        resolved = candidate.resolve()
        if not resolved.is_relative_to(self.root) or resolved != candidate:
            raise UnsafePathError(f"evidence path {relpath!r}: resolves outside the evidence store")
        if not resolved.is_file():
            raise EvidenceError(f"evidence path {relpath!r}: no such file in the evidence store")
        return resolved

    def read_manifest(self, incident_id: str) -> dict | None:
        path = self.incident_dir(incident_id) / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise EvidenceError(f"{path}: unreadable manifest: {exc}") from exc
        return data if isinstance(data, dict) else None

    def entries(self) -> list[EvidenceEntry]:
        out = []
        for child in sorted(self.root.iterdir()):
            if not child.is_dir() or child.is_symlink() or not _SAFE_ID.fullmatch(child.name):
                continue
            size = sum(f.stat().st_size for f in child.rglob("*") if f.is_file())
            created = child.stat().st_mtime
            try:
                manifest = self.read_manifest(child.name)
            except EvidenceError:
                manifest = None
            if manifest:
                opened = manifest.get("times", {}).get("opened_at")
                if isinstance(opened, (int, float)):
                    created = float(opened)
            out.append(EvidenceEntry(child.name, child, created, size))
        return out

    def delete(self, incident_id: str) -> None:
        path = self.incident_dir(incident_id)
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise EvidenceError(f"{path}: cannot delete evidence: {exc.strerror or exc}") from exc
