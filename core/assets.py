"""Registered third-party files (model weights, footage, images) and the cache that holds them.

Nothing here is committed: the repository only knows each file by name, size and sha256. A file
reaches the cache directory (env ``PATROL_CACHE``, default ``<repo>/var/cache``) by one of two roads:

1. copied from a mirror directory (env ``PATROL_MIRROR``, default ``<repo>/../shared`` when it
   exists), looked up by the asset's relative path, e.g. ``models/yolox_nano_416.onnx``;
2. downloaded from the asset's ``url`` — only for entries whose public address serves these exact
   bytes (re-encoded clips have a ``source`` for provenance but no ``url``).

Either road writes a temporary file next to the target, checks its sha256 and renames it into
place, so the cache never holds a file that fails its checksum. A folder asset (images with labels,
ground-truth PNGs) is a list of files, each with its own sha256, fetched file by file the same way.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from core.errors import AssetError
from core.progress import reading

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_YAML = Path(__file__).with_name("assets.yaml")
KINDS = ("model", "footage", "image", "dataset", "groundtruth", "text")
_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class AssetFile:
    """One file of an asset: path relative to the cache/mirror root, its sha256 and size in bytes."""

    path: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Asset:
    """A registered file, or a folder of files, with its licence and public provenance.

    ``path`` is relative to the cache and mirror roots. ``source`` is the public address the data
    comes from; ``url`` is set only where that address serves exactly these bytes. For a folder
    asset ``files`` lists every member (paths relative to the same root, below ``path``).
    """

    name: str
    path: str
    kind: str
    licence: str
    source: str
    sha256: str | None = None
    size: int | None = None
    url: str | None = None
    files: tuple[AssetFile, ...] = field(default_factory=tuple)
    note: str = ""

    @property
    def is_folder(self) -> bool:
        return bool(self.files)

    def members(self) -> tuple[AssetFile, ...]:
        if self.files:
            return self.files
        assert self.sha256 is not None
        return (AssetFile(self.path, self.sha256, self.size),)

    @property
    def total_size(self) -> int:
        return self.size if self.size is not None else sum(f.size or 0 for f in self.members())


def _hex64(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise AssetError(f"{where}: sha256 must be 64 lowercase hex digits, got {value!r}")
    return value


def asset_from_mapping(name: str, raw: Any, where: str) -> Asset:
    """Build and check one entry read from YAML; errors name the file and the entry."""
    here = f"{where}: asset {name!r}"
    if not isinstance(raw, Mapping):
        raise AssetError(f"{here}: expected a mapping, got {type(raw).__name__}")
    allowed = {"path", "kind", "licence", "source", "sha256", "size", "url", "files", "note"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise AssetError(f"{here}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    for key in ("path", "kind", "licence", "source"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise AssetError(f"{here}: field {key!r} is required (a non-empty string)")
    if raw["kind"] not in KINDS:
        raise AssetError(f"{here}: kind must be one of {KINDS}, got {raw['kind']!r}")
    rel = raw["path"]
    if rel.startswith("/") or ".." in Path(rel).parts:
        raise AssetError(f"{here}: path must be relative and stay inside the cache, got {rel!r}")
    files: list[AssetFile] = []
    if "files" in raw:
        if "sha256" in raw or not isinstance(raw["files"], Mapping) or not raw["files"]:
            raise AssetError(f"{here}: a folder asset has a non-empty 'files' mapping and no own sha256")
        for member, digest in raw["files"].items():
            files.append(AssetFile(f"{rel}/{member}", _hex64(digest, f"{here} file {member!r}")))
    else:
        _hex64(raw.get("sha256"), here)
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise AssetError(f"{here}: size must be a non-negative integer, got {size!r}")
    return Asset(
        name=name, path=rel, kind=raw["kind"], licence=raw["licence"], source=raw["source"],
        sha256=raw.get("sha256"), size=size, url=raw.get("url"), files=tuple(files),
        note=str(raw.get("note", "")),
    )


def load_asset_file(path: Path) -> dict[str, Asset]:
    """Read a registry YAML file (``assets:`` mapping name -> entry)."""
    try:
        text = path.read_text(encoding="utf-8")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        raw = yaml.load(text, Loader=loader)
    except (OSError, yaml.YAMLError) as exc:
        raise AssetError(f"{path}: cannot read asset registry: {exc}") from exc
    if not isinstance(raw, Mapping) or not isinstance(raw.get("assets"), Mapping):
        raise AssetError(f"{path}: expected a top-level 'assets:' mapping")
    return {name: asset_from_mapping(str(name), entry, str(path)) for name, entry in raw["assets"].items()}


@functools.cache
def data_assets() -> dict[str, Asset]:
    """The data files registered in ``core/assets.yaml`` (models live in ``models/registry.yaml``)."""
    return load_asset_file(ASSETS_YAML)


def get_asset(name: str) -> Asset:
    assets = data_assets()
    try:
        return assets[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(assets))}") from None


# --- locations ---------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    env = os.environ.get("PATROL_CACHE")
    return Path(env) if env else REPO_ROOT / "var" / "cache"


def default_mirror_dir() -> Path | None:
    env = os.environ.get("PATROL_MIRROR")
    if env is not None:
        return Path(env) if env else None
    candidate = REPO_ROOT.parent / "shared"
    return candidate if candidate.is_dir() else None


# --- hashing and copying -------------------------------------------------------------------------

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stream_to(src: BinaryIO, dst: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        dst.write(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _temp_beside(target: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file in the target's directory; removed unless the caller renamed it away."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, tmp
    finally:
        tmp.unlink(missing_ok=True)


class AssetCache:
    """Fetch registered files into one cache directory, from a mirror or their public URL."""

    def __init__(self, cache_dir: Path | None = None, mirror_dir: Path | str | None = "default",
                 allow_download: bool = True) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.mirror_dir: Path | None = (
            default_mirror_dir() if mirror_dir == "default" else (Path(mirror_dir) if mirror_dir else None)
        )
        self.allow_download = allow_download

    def cached_path(self, asset: Asset) -> Path:
        return self.cache_dir / asset.path

    def is_cached(self, asset: Asset) -> bool:
        return all(self._good_in_cache(m) for m in asset.members())

    def fetch(self, asset: Asset) -> Path:
        """Return the cached path of ``asset`` (a file, or the folder of a folder asset)."""
        for member in asset.members():
            self._fetch_file(asset, member)
        return self.cached_path(asset)

    def _good_in_cache(self, member: AssetFile) -> bool:
        target = self.cache_dir / member.path
        if not target.is_file():
            return False
        if member.size is not None and target.stat().st_size != member.size:
            return False
        return sha256_of(target) == member.sha256

    def _fetch_file(self, asset: Asset, member: AssetFile) -> Path:
        target = self.cache_dir / member.path
        if self._good_in_cache(member):
            return target
        target.unlink(missing_ok=True)  # a damaged or outdated copy never stays in the cache
        tried: list[str] = []
        if self.mirror_dir is not None:
            src = self.mirror_dir / member.path
            if src.is_file():
                with src.open("rb") as fh:
                    self._store(asset, member, fh, f"mirror file {src}")
                return target
            tried.append(f"not in mirror {self.mirror_dir}" + ("" if self.mirror_dir.is_dir() else
                         " (no such folder: set PATROL_MIRROR to the folder that holds the shared models and footage)"))
        else:
            tried.append("no mirror (set PATROL_MIRROR)")
        url = self._member_url(asset, member)
        if url is None:
            tried.append("no download address (the public source is not these exact bytes)")
        elif not self.allow_download:
            tried.append("downloads disabled")
        else:
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                    self._store(asset, member, resp, f"download {url}")
                return target
            except (urllib.error.URLError, OSError, ValueError) as exc:
                tried.append(f"download from {url} failed: {exc}")
        raise AssetError(f"asset {asset.name!r}: cannot get {member.path}: " + "; ".join(tried))

    @staticmethod
    def _member_url(asset: Asset, member: AssetFile) -> str | None:
        if asset.url is None:
            return None
        if not asset.is_folder:
            return asset.url
        return asset.url.rstrip("/") + "/" + member.path[len(asset.path) + 1:]

    def _store(self, asset: Asset, member: AssetFile, src: BinaryIO, origin: str) -> None:
        target = self.cache_dir / member.path
        with _temp_beside(target) as (fh, tmp), reading(src, desc=Path(member.path).name, total=member.size) as read:
            actual = _stream_to(read, fh)
            fh.close()
            if actual != member.sha256:
                raise AssetError(
                    f"asset {asset.name!r}: {origin} has the wrong sha256 for {member.path}: "
                    f"expected {member.sha256}, got {actual}; not cached"
                )
            tmp.chmod(0o644)
            os.replace(tmp, target)


def fetch(name: str, cache: AssetCache | None = None) -> Path:
    """Cached path of the data asset ``name``, fetching it first if needed."""
    return (cache or AssetCache()).fetch(get_asset(name))


# --- maintenance: write folder manifests -----------------------------------------------------------

def folder_manifest(root: Path, rel: str) -> dict[str, str]:
    """``{member: sha256}`` for every file below ``root/rel`` (used to write a folder entry)."""
    base = root / rel
    if not base.is_dir():
        raise AssetError(f"{base}: not a folder")
    return {p.relative_to(base).as_posix(): sha256_of(p) for p in sorted(base.rglob("*")) if p.is_file()}

