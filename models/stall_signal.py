"""A learned stall signal: where in a frame a vendor cart ("thela") or stall stands.

COCO has no class for a cart or a stall, so the project trains its own small classifier
(:mod:`models.stall_train`, ``patrol train stall``) over the cells of a shared detector's feature
maps: YOLOX-Nano (``yolox_nano_416``, already in the registry) is cut after its feature pyramid,
each stride-16 cell gets its 128 stride-16 channels and the 256 channels of the stride-32 cell
above it (384 numbers), and a logistic regression over those gives each cell a probability of
being cart. Cells at or over the model's threshold, joined as connected components, are the
stall regions this module reports, each with its best cell's probability as its score.

Only the classifier is ours and committed (``models/stall_thela_lr.onnx``, a few kB, with its
card ``models/stall_thela_lr.md``); the feature extractor is built at load time from the cached
YOLOX file, so no third-party weights are committed. Both run with ONNX Runtime only: training
dependencies (scikit-learn, skl2onnx) are never needed to run.

The entry ``signals.stall_thela_lr`` in ``models/registry.yaml`` names the classifier file, its
sha256 and size, the feature model, the feature tensors and the probability threshold; a
classifier file whose sha256 differs is refused (:class:`core.errors.AssetError`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.assets import AssetCache
from core.errors import AssetError, ModelError
from models.base import Placement, check_image, create_session, place, to_tensor
from models.registry import REGISTRY_YAML, InputSpec, get_spec

MODELS_DIR = Path(__file__).parent
SIGNAL_NAME = "stall_thela_lr"
Box = tuple[float, float, float, float]


class SignalSpec(BaseModel):
    """One learned signal of ``models/registry.yaml`` (section ``signals``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.onnx$", description="classifier file, beside this module")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(gt=0)
    licence: str
    card: str = Field(description="the model card, beside this module")
    features_model: str = Field(description="registered detector whose feature maps are the classifier's input")
    feature_tensors: tuple[str, str] = Field(description="(stride-16, stride-32) tensor names in that model")
    threshold: float = Field(gt=0, lt=1, description="cell probability that counts as cart")
    min_cells: int = Field(default=1, ge=1, le=64, description="least cells of one region")


def load_signal_spec(name: str = SIGNAL_NAME, path: Path = REGISTRY_YAML) -> SignalSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AssetError(f"{path}: cannot read model registry: {exc}") from exc
    entry = (raw or {}).get("signals", {}).get(name) if isinstance(raw, dict) else None
    if not isinstance(entry, dict):
        raise AssetError(f"{path}: no entry signals.{name}")
    try:
        return SignalSpec(name=name, **entry)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise AssetError(f"{path}: signal {name!r}: field {loc}: {first['msg']}") from exc


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class StallRegion:
    """Cells the classifier calls cart, joined: a box in image pixels and its best cell's probability."""

    xyxy: Box
    score: float
    cells: int


@dataclass(frozen=True)
class CellFeatures:
    """One image's stride-16 cells: features (N, 384), cell boxes in image pixels (N, 4), grid shape."""

    features: npt.NDArray[np.float32]
    boxes: npt.NDArray[np.float32]
    grid: tuple[int, int]  # (rows, cols) of cells covering the picture
    placement: Placement


class FeatureExtractor:
    """YOLOX-Nano cut after its feature pyramid: a picture in, its per-cell features out."""

    STRIDE = 16

    def __init__(self, model_name: str, tensors: tuple[str, str], cache: AssetCache | None = None,
                 threads: int | None = 1) -> None:
        import onnx
        import onnx.shape_inference
        import onnx.utils

        spec = get_spec(model_name)
        if spec.family != "yolox":
            raise ModelError(f"stall signal: feature model {model_name!r} is {spec.family}, expected yolox")
        path = (cache or AssetCache()).fetch(spec.asset())
        self.spec: InputSpec = spec.input
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))  # the cut needs tensor types
        input_name = model.graph.input[0].name
        try:
            cut = onnx.utils.Extractor(model).extract_model([input_name], list(tensors))
        except Exception as exc:  # onnx raises plain errors for unknown tensor names
            raise ModelError(f"{path}: cannot cut the feature tensors {tensors}: {exc}") from exc
        dims = cut.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"  # runs on the canvas cut to the picture
        for out in cut.graph.output:
            del out.type.tensor_type.shape.dim[:]
        self.session = _session(cut.SerializeToString(), threads)
        self.input_name = input_name
        self.tensors = tensors

    def __call__(self, image: npt.NDArray[np.uint8]) -> CellFeatures:
        image = check_image(image, 0)
        canvas, placement = place(image, self.spec, fit=32)
        p16, p32 = self.session.run(list(self.tensors), {self.input_name: to_tensor([canvas], self.spec)})
        s = self.STRIDE
        rows = min(p16.shape[2], -(-round(image.shape[0] * placement.scale_y) // s))
        cols = min(p16.shape[3], -(-round(image.shape[1] * placement.scale_x) // s))
        up = np.repeat(np.repeat(p32[0], 2, axis=1), 2, axis=2)[:, :p16.shape[2], :p16.shape[3]]
        both = np.concatenate([p16[0], up], axis=0)[:, :rows, :cols]
        features = np.ascontiguousarray(both.reshape(both.shape[0], -1).T, dtype=np.float32)
        gy, gx = np.mgrid[0:rows, 0:cols]
        net = np.stack([gx.ravel() * s, gy.ravel() * s, (gx.ravel() + 1) * s, (gy.ravel() + 1) * s],
                       axis=1).astype(np.float32)
        return CellFeatures(features, placement.to_image(net), (rows, cols), placement)


def _session(model: bytes | str, threads: int | None) -> ort.InferenceSession:
    if isinstance(model, str):
        return create_session(model, threads=threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"stall signal: cannot load the feature model: {exc}") from exc


class CellClassifier:
    """The committed classifier (skl2onnx export): features (N, D) -> probability of cart (N,)."""

    def __init__(self, path: Path, sha256: str | None = None) -> None:
        if not path.is_file():
            raise AssetError(f"{path}: stall classifier missing (train it: patrol train stall)")
        if sha256 is not None and (actual := sha256_of(path)) != sha256:
            raise AssetError(f"{path}: sha256 {actual} differs from models/registry.yaml ({sha256}); "
                             "retrain with `patrol train stall` or restore the file")
        self.session = _session(str(path), 1)
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.prob_name = next((o for o in outputs if "prob" in o), outputs[-1])

    def __call__(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if len(features) == 0:
            return np.zeros(0, np.float32)
        probs = self.session.run([self.prob_name], {self.input_name: features.astype(np.float32)})[0]
        return np.asarray(probs, np.float32)[:, 1]


def regions_of(probs: npt.NDArray[np.float32], cells: CellFeatures, threshold: float,
               min_cells: int = 1) -> list[StallRegion]:
    """Connected components (8-neighbours) of cells with probability >= ``threshold``."""
    rows, cols = cells.grid
    grid = probs.reshape(rows, cols)
    mask = (grid >= threshold).astype(np.uint8)
    if not mask.any():
        return []
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    boxes = cells.boxes.reshape(rows, cols, 4)
    out = []
    for k in range(1, count):
        sel = labels == k
        n = int(sel.sum())
        if n < min_cells:
            continue
        b = boxes[sel]
        out.append(StallRegion((float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()),
                                float(b[:, 3].max())), float(grid[sel].max()), n))
    return sorted(out, key=lambda r: -r.score)


class StallScorer:
    """Feature extractor + committed classifier: ``regions(image)`` -> the frame's stall regions.

    Costs one truncated YOLOX-Nano pass (no detection head) plus a logistic regression per frame
    it is called on; the figure on this project's machine is in the model card."""

    def __init__(self, spec: SignalSpec | None = None, cache: AssetCache | None = None,
                 classifier_path: Path | None = None) -> None:
        self.spec = spec or load_signal_spec()
        self.features = FeatureExtractor(self.spec.features_model, self.spec.feature_tensors, cache)
        path = classifier_path or MODELS_DIR / self.spec.file
        self.classifier = CellClassifier(path, None if classifier_path else self.spec.sha256)
        self.threshold = self.spec.threshold

    def cell_probs(self, image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], CellFeatures]:
        cells = self.features(image)
        return self.classifier(cells.features), cells

    def regions(self, image: npt.NDArray[np.uint8]) -> list[StallRegion]:
        probs, cells = self.cell_probs(image)
        return regions_of(probs, cells, self.threshold, self.spec.min_cells)


@functools.cache
def shared_scorer() -> StallScorer:
    """One scorer per process (its sessions are read-only and may serve every camera)."""
    return StallScorer()
