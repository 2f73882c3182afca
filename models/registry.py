"""The registry of known detector files (``models/registry.yaml``): what each file is and how to feed it.

Each entry is both an asset (file, sha256, size, licence, public source — fetched through
:mod:`core.assets`) and an input/decoder spec the adapters read. Weights are never committed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.assets import Asset, AssetCache
from core.errors import AssetError

REGISTRY_YAML = Path(__file__).with_name("registry.yaml")
Family = Literal["yolox", "gfl", "ultralytics", "fastestdet"]


class InputSpec(BaseModel):
    """How an image becomes the network input: size, channel order, normalisation, resize mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(gt=0, le=4096, description="network input width in pixels")
    height: int = Field(gt=0, le=4096, description="network input height in pixels")
    colour: Literal["bgr", "rgb"] = Field(description="channel order fed to the network")
    mean: tuple[float, float, float] = Field(description="per-channel mean on 0..255 values, network order")
    std: tuple[float, float, float] = Field(description="per-channel divisor after the mean, network order")
    resize: Literal["letterbox", "stretch"] = Field(description="keep aspect and pad, or stretch")
    pad_value: float = Field(default=114, ge=0, le=255, description="grey level of letterbox padding")
    anchor: Literal["top_left", "center"] = Field(default="top_left", description="where the image sits")
    fit: int = Field(default=0, ge=0, le=512, description=(
        "fully convolutional networks only: 0 runs the full width x height canvas; N > 0 runs the "
        "letterboxed picture on a canvas cut down to the next multiple of N (the largest stride), "
        "so a 16:9 frame in a 416x416 network costs 416x256, not 416x416 of mostly padding"))


class ModelSpec(BaseModel):
    """One registered model file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.onnx$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(gt=0)
    licence: str
    source: str = Field(pattern=r"^https://")
    family: Family
    description: str = ""
    input: InputSpec
    strides: tuple[int, ...] = ()
    reg_max: int = Field(default=7, ge=1)
    num_classes: int = Field(default=80, ge=1)

    def asset(self) -> Asset:
        """The file as an asset; ``source`` serves exactly these bytes, so it is also the URL."""
        return Asset(name=self.name, path=f"models/{self.file}", kind="model", licence=self.licence,
                     source=self.source, url=self.source, sha256=self.sha256, size=self.size)


def load_registry(path: Path = REGISTRY_YAML) -> dict[str, ModelSpec]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AssetError(f"{path}: cannot read model registry: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise AssetError(f"{path}: expected a top-level 'models:' mapping")
    specs: dict[str, ModelSpec] = {}
    for name, entry in raw["models"].items():
        if not isinstance(entry, dict):
            raise AssetError(f"{path}: model {name!r}: expected a mapping")
        try:
            specs[name] = ModelSpec(name=name, **entry)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise AssetError(f"{path}: model {name!r}: field {loc}: {first['msg']}") from exc
    return specs


@functools.cache
def registry() -> dict[str, ModelSpec]:
    return load_registry()


def get_spec(name: str) -> ModelSpec:
    specs = registry()
    try:
        return specs[name]
    except KeyError:
        raise AssetError(f"unknown model {name!r}; known: {', '.join(sorted(specs))}") from None


def fetch_model(name: str, cache: AssetCache | None = None) -> Path:
    """Cached path of the registered model ``name``, copied or downloaded and checked first if needed."""
    return (cache or AssetCache()).fetch(get_spec(name).asset())
