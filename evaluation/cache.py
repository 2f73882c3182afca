"""Detection cache: every analysed frame's stream time and detections of one clip, in one .npz.

Tuning re-runs only tracking and rules, so the detector runs once per clip. A cache is keyed by
the clip's sha256, the model's name and sha256, and the detector settings that change what it
returns (score thresholds, analysis fps, input size). Loading with a different key is refused
(:class:`CacheMismatch`, naming the fields that differ); the caller then re-detects.

Besides detections a cache may carry named per-frame arrays (*extras*), e.g. the static regions
of the dual-background model, stored concatenated with offsets like the detections. The file is
a plain compressed ``.npz`` without pickles: metadata is UTF-8 JSON in a uint8 array.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import PatrolError
from core.types import Detections

FORMAT_VERSION = 1


class CacheError(PatrolError):
    """A detection cache cannot be used."""


class CacheMissing(CacheError):
    """No cache file at the expected path."""


class CacheMismatch(CacheError):
    """The cache was made for another clip, model or detector settings."""

    def __init__(self, path: Path, differences: list[str]) -> None:
        self.path = path
        self.differences = differences
        super().__init__(f"detection cache {path} refused: " + "; ".join(differences))


@dataclass(frozen=True)
class CacheKey:
    """What a cache's detections depend on. ``settings`` holds JSON-able detector settings."""

    clip_sha256: str
    model: str
    model_sha256: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"clip_sha256": self.clip_sha256, "model": self.model, "model_sha256": self.model_sha256,
                "settings": json.loads(json.dumps(dict(self.settings), sort_keys=True))}

    def differences(self, other: CacheKey) -> list[str]:
        """Human-readable list of fields where ``other`` (the stored key) differs from self."""
        mine, theirs = self.as_dict(), other.as_dict()
        out = [f"{k}: cache has {theirs[k]!r}, wanted {mine[k]!r}"
               for k in ("clip_sha256", "model", "model_sha256") if mine[k] != theirs[k]]
        ms, ts = mine["settings"], theirs["settings"]
        out += [f"settings.{k}: cache has {ts.get(k)!r}, wanted {ms.get(k)!r}"
                for k in sorted(set(ms) | set(ts)) if ms.get(k) != ts.get(k)]
        return out


@dataclass
class CachedClip:
    """Per-frame stream times and detections; ``extras[name][i]`` is frame i's extra array."""

    key: CacheKey
    frame_size: tuple[int, int]
    pts: list[float] = field(default_factory=list)
    detections: list[Detections] = field(default_factory=list)
    extras: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def append(self, pts: float, detections: Detections, **extras: np.ndarray) -> None:
        """Record one analysed frame. Every frame must carry the same extra names."""
        if self.pts and pts <= self.pts[-1]:
            raise CacheError(f"frame times must increase: {pts} after {self.pts[-1]}")
        if self.pts and set(extras) != set(self.extras):
            raise CacheError(f"frame at {pts}s has extras {sorted(extras)}, earlier frames {sorted(self.extras)}")
        if not self.pts:
            self.extras = {name: [] for name in extras}
        self.pts.append(float(pts))
        self.detections.append(detections)
        for name, arr in extras.items():
            self.extras[name].append(np.asarray(arr))

    def __len__(self) -> int:
        return len(self.pts)


def _ragged(arrays: Sequence[np.ndarray], trailing: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(arrays) + 1, np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    data = np.concatenate([np.asarray(a, dtype).reshape((-1, *trailing)) for a in arrays]) if arrays \
        else np.zeros((0, *trailing), dtype)
    return data, offsets


def save_cache(path: str | Path, clip: CachedClip) -> Path:
    """Write ``clip`` atomically (temp file + rename) as compressed .npz."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    extras_meta: dict[str, Any] = {}
    meta = {"format": FORMAT_VERSION, "key": clip.key.as_dict(), "frame_size": list(clip.frame_size),
            "extras": extras_meta}
    arrays: dict[str, npt.NDArray[Any]] = {"pts": np.asarray(clip.pts, np.float64)}
    dets = clip.detections
    arrays["xyxy"], arrays["offsets"] = _ragged([d.xyxy for d in dets], (4,), np.float32)
    arrays["score"], _ = _ragged([d.score for d in dets], (), np.float32)
    arrays["class_id"], _ = _ragged([d.class_id for d in dets], (), np.int32)
    for name, per_frame in clip.extras.items():
        if not name.isidentifier():
            raise CacheError(f"extra name {name!r} must be an identifier")
        first = per_frame[0] if per_frame else np.zeros((0,), np.float32)
        trailing, dtype = tuple(first.shape[1:]), first.dtype
        data, offsets = _ragged(per_frame, trailing, dtype)
        arrays[f"x_{name}_data"], arrays[f"x_{name}_offsets"] = data, offsets
        extras_meta[name] = {"dtype": str(dtype), "trailing": list(trailing)}
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=p.name, suffix=".tmp.npz", dir=p.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is as readable as the clips it is made from
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def read_key(path: str | Path) -> CacheKey:
    """The key stored in a cache file, without loading the detections."""
    return _key_from_meta(_read_meta(Path(path)))


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CacheMissing(f"no detection cache at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta: dict[str, Any] = json.loads(npz["meta"].tobytes().decode())
    except (OSError, ValueError, KeyError) as exc:
        raise CacheError(f"detection cache {path} is unreadable: {exc}") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise CacheMismatch(path, [f"format: cache has {meta.get('format')!r}, wanted {FORMAT_VERSION}"])
    return meta


def _key_from_meta(meta: dict[str, Any]) -> CacheKey:
    k = meta["key"]
    return CacheKey(k["clip_sha256"], k["model"], k["model_sha256"], k["settings"])


def load_cache(path: str | Path, key: CacheKey) -> CachedClip:
    """Load a cache made for exactly ``key``; :class:`CacheMismatch` if it was made for another."""
    p = Path(path)
    meta = _read_meta(p)
    stored = _key_from_meta(meta)
    diff = key.differences(stored)
    if diff:
        raise CacheMismatch(p, diff)
    try:
        with np.load(p, allow_pickle=False) as npz:
            pts, off = npz["pts"], npz["offsets"]
            xyxy, score, cls = npz["xyxy"], npz["score"], npz["class_id"]
            extras_raw = {name: (npz[f"x_{name}_data"], npz[f"x_{name}_offsets"]) for name in meta["extras"]}
    except (OSError, ValueError, KeyError) as exc:
        raise CacheError(f"detection cache {p} is unreadable: {exc}") from exc
    if len(off) != len(pts) + 1 or off[-1] != len(xyxy):
        raise CacheError(f"detection cache {p} is inconsistent: {len(pts)} frames, {len(off)} offsets, "
                         f"{len(xyxy)} boxes")
    dets = [Detections(xyxy[a:b], score[a:b], cls[a:b]) for a, b in itertools.pairwise(off)]
    extras = {name: [data[a:b] for a, b in itertools.pairwise(o)]
              for name, (data, o) in extras_raw.items()}
    w, h = meta["frame_size"]
    return CachedClip(stored, (int(w), int(h)), [float(t) for t in pts], dets, extras)
