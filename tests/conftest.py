"""Fixtures shared by every test package. Append yours below; keep the others'.

Asset fixtures (models/ owner): registered files come through the asset cache
(``PATROL_CACHE``, seeded from the mirror ``PATROL_MIRROR`` / ``../shared``), never from
hard-coded paths into ../shared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from patrol.assets import AssetCache, data_assets, default_mirror_dir

AssetPath = Callable[[str], Path]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only mirror of third-party data (``PATROL_MIRROR``, default ``../shared``)."""
    mirror = default_mirror_dir()
    if mirror is None or not mirror.is_dir():
        pytest.skip("no asset mirror: set PATROL_MIRROR or check out ../shared")
    return mirror


@pytest.fixture(scope="session")
def asset_path() -> AssetPath:
    """``asset_path(name)`` -> cached path of a registered data asset or model (fetched if needed)."""
    from models.registry import registry

    cache = AssetCache()

    def get(name: str) -> Path:
        models = registry()
        if name in models:
            return cache.fetch(models[name].asset())
        if name not in data_assets():
            raise KeyError(f"{name!r} is not a registered asset or model")
        return cache.fetch(data_assets()[name])

    return get


@pytest.fixture(scope="session")
def yolox_detector():  # type: ignore[no-untyped-def]
    """One YOLOX-Nano 416 detector for the whole session (score 0.3, per-class NMS)."""
    from models.factory import load_detector

    detector = load_detector("yolox_nano_416", score_threshold=0.3)
    detector.warmup()
    return detector
