"""Training of the learned stall signal (:mod:`models.stall_signal`); needs the ``train`` extra.

Data: the shared vendor-cart photos (asset ``vendor_carts``, YOLO labels, class 1 ``thela``) under
a fixed train/validation split committed as file-name lists (``labels/stall_split/``), and, as
negatives, frames of the shared footage that are not the street clips the stall rule is measured
on (:data:`NEGATIVE_CLIPS`: a car park, two left-object scenes, two indoor scenes). Every cell of
a training photo whose centre lies inside a thela box shrunk by :attr:`TrainSettings.shrink` on
each side is a positive; cells in the box but outside the shrunk one are left out (half cart, half
street); every other cell of the photo (road, cars, people, rickshaws, barricades) and every cell
of a negative frame is a negative.

Model: standardisation + logistic regression (scikit-learn, ``class_weight="balanced"``: about
6 % of cells are cart), exported with skl2onnx. The probability threshold is chosen on the
training data alone, out of fold (:attr:`TrainSettings.folds` folds grouped by photo and by clip):
the highest threshold at which at least :attr:`TrainSettings.target_recall` of the training
photos have a cart cell at or over it. False alarms are then measured, not tuned: out of fold on
the negative frames and on the parts of the photos far from any cart, and by ``patrol train
stall`` on the street clips, which training never sees. The validation photos are never seen.

Deterministic: the same data and settings give the same model bytes (lbfgs, no random state).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from core.assets import REPO_ROOT, AssetCache, get_asset
from core.errors import AssetError, PatrolError
from models.stall_signal import CellClassifier, CellFeatures, FeatureExtractor, SignalSpec

log = logging.getLogger("patrol.train")

THELA = 1
SPLIT_DIR = REPO_ROOT / "labels" / "stall_split"
# (asset, seconds between two frames taken): about 70 frames in all, none from the street clips the
# stall rule's false-positive rate is measured on (tests/rules/test_stall_images.py's list)
NEGATIVE_CLIPS: tuple[tuple[str, float], ...] = (
    ("courtyard_kam1", 2.0), ("aboda_video1_cut", 3.0), ("avss2007_ab_easy", 8.0),
    ("candela_m1_10", 3.0), ("hall_and_monitor", 3.0))


class TrainingError(PatrolError):
    """Training data or dependencies are missing or unusable."""


@dataclass(frozen=True)
class TrainSettings:
    C: float = 0.01
    """Inverse L2 strength of the logistic regression: 0.01 and 0.1 gave the same validation figures
    within a photo on the first trial (0.94 at threshold 0.95); 0.01 fits in 8 s instead of 12."""
    shrink: float = 0.1
    """Fraction of a thela box cut off each side before its cells count as positive."""
    folds: int = 5
    target_recall: float = 0.95
    """Out-of-fold share of training photos whose cart cells must reach the threshold."""
    min_cells: int = 1
    negative_clips: tuple[tuple[str, float], ...] = NEGATIVE_CLIPS
    features_model: str = "yolox_nano_416"
    feature_tensors: tuple[str, str] = ("/backbone/C3_n3/conv3/act/Mul_output_0",
                                        "/backbone/C3_n4/conv3/act/Mul_output_0")
    max_train_photos: int | None = None
    """Smoke runs (CI) train on the first N training photos only."""


@dataclass(frozen=True)
class Photo:
    name: str
    path: Path
    thela: tuple[tuple[float, float, float, float], ...]  # pixel boxes


@dataclass
class TrainResult:
    model_bytes: bytes
    threshold: float
    settings: TrainSettings
    train_photos: int
    negative_frames: int
    cells: int
    positive_cells: int
    oof_photo_recall: float
    oof_negative_rate: float
    oof_far_rate: float
    """Out of fold: share of training photos with a cell over the threshold far from every cart
    (outside each thela box grown by half its size)."""
    seconds: dict[str, float] = field(default_factory=dict)


# --- data ----------------------------------------------------------------------------------------

def read_split(split_dir: Path = SPLIT_DIR) -> tuple[list[str], list[str]]:
    """The committed (train, validation) file-name lists."""
    out = []
    for part in ("train", "val"):
        path = split_dir / f"{part}.txt"
        try:
            names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
                     if ln.strip() and not ln.startswith("#")]
        except OSError as exc:
            raise TrainingError(f"{path}: cannot read the stall split: {exc}") from exc
        out.append(names)
    train, val = out
    if overlap := sorted(set(train) & set(val)):
        raise TrainingError(f"{split_dir}: {len(overlap)} photos in both train and val, e.g. {overlap[0]}")
    return train, val


def read_photos(folder: Path, names: Sequence[str]) -> list[Photo]:
    """Photos of the vendor_carts asset with their thela boxes in pixels."""
    photos = []
    for name in names:
        path = folder / "images" / "train" / name
        label = folder / "labels" / "train" / (Path(name).stem + ".txt")
        image = cv2.imread(str(path))
        if image is None:
            raise TrainingError(f"{path}: cannot read the photo (listed in {SPLIT_DIR})")
        h, w = image.shape[:2]
        try:
            rows = np.loadtxt(label, ndmin=2) if label.stat().st_size else np.zeros((0, 5))
        except (OSError, ValueError) as exc:
            raise TrainingError(f"{label}: cannot read YOLO labels: {exc}") from exc
        boxes = tuple((float((cx - bw / 2) * w), float((cy - bh / 2) * h), float((cx + bw / 2) * w),
                       float((cy + bh / 2) * h)) for c, cx, cy, bw, bh in rows if int(c) == THELA)
        photos.append(Photo(name, path, boxes))
    return photos


def clip_stills(path: Path, every_s: float) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """A decoded frame every ``every_s`` seconds of stream time (OpenCV; training only)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise TrainingError(f"{path}: cannot open the clip")
    due = 0.0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if t + 1e-6 >= due:
                due += every_s
                yield t, np.asarray(frame, dtype=np.uint8)
    finally:
        cap.release()


def cell_labels(cells: CellFeatures, thela: Sequence[tuple[float, float, float, float]],
                shrink: float) -> npt.NDArray[np.int8]:
    """1 cart, 0 not cart, -1 left out (a cell centre in a box but not in its shrunk core)."""
    b = cells.boxes
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    y = np.zeros(len(b), np.int8)
    for x0, y0, x1, y1 in thela:
        inside = (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
        mx, my = shrink * (x1 - x0), shrink * (y1 - y0)
        core = (cx >= x0 + mx) & (cx <= x1 - mx) & (cy >= y0 + my) & (cy <= y1 - my)
        y[inside & (y != 1)] = -1
        y[core] = 1
    return y


@dataclass
class CellSet:
    """Training cells: features, labels, the image each came from, and which images are negatives."""

    x: list[npt.NDArray[np.float32]] = field(default_factory=list)
    y: list[npt.NDArray[np.int8]] = field(default_factory=list)
    image: list[npt.NDArray[np.int32]] = field(default_factory=list)
    far: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    negative_image: list[bool] = field(default_factory=list)
    group: list[str] = field(default_factory=list)

    def add(self, x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], far: npt.NDArray[np.bool_], negative: bool,
            group: str) -> None:
        keep = y >= 0
        self.x.append(x[keep])
        self.y.append(y[keep])
        self.far.append(far[keep])
        self.image.append(np.full(int(keep.sum()), len(self.negative_image), np.int32))
        self.negative_image.append(negative)
        self.group.append(group)

    def arrays(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8], npt.NDArray[np.int32]]:
        return np.concatenate(self.x), np.concatenate(self.y), np.concatenate(self.image)


def build_cells(extractor: FeatureExtractor, photos: Sequence[Photo], cache: AssetCache,
                settings: TrainSettings) -> CellSet:
    cells = CellSet()
    for photo in photos:
        image = cv2.imread(str(photo.path))
        assert image is not None, photo.path  # read once already by read_photos
        feats = extractor(np.asarray(image, np.uint8))
        grown = cell_labels(feats, [_grow(b, 0.5) for b in photo.thela], 0.0)
        cells.add(feats.features, cell_labels(feats, photo.thela, settings.shrink), grown == 0, False, photo.name)
    for name, every in settings.negative_clips:
        path = cache.fetch(get_asset(name))
        for _t, frame in clip_stills(path, every):
            feats = extractor(frame)
            n = len(feats.features)
            cells.add(feats.features, np.zeros(n, np.int8), np.ones(n, np.bool_), True, name)
    return cells


# --- model ---------------------------------------------------------------------------------------

def _sklearn() -> Any:
    try:
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise TrainingError("training needs the train extra: pip install -e '.[train]' "
                            f"(scikit-learn, skl2onnx): {exc}") from exc
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced",
                                                                        max_iter=2000))


def fit(x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], c: float) -> Any:
    model = _sklearn()(c)
    model.fit(x, y)
    return model


def to_onnx(model: Any, features: int) -> bytes:
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = skl_to_onnx(model, initial_types=[("features", FloatTensorType([None, features]))],
                      options={id(model): {"zipmap": False}}, target_opset=17)
    onx.producer_version = ""  # bytes depend on data and settings only
    return bytes(onx.SerializeToString())


def image_max(probs: npt.NDArray[np.float32], image: npt.NDArray[np.int32], count: int) -> npt.NDArray[np.float32]:
    out = np.zeros(count, np.float32)
    np.maximum.at(out, image, probs)
    return out


def _grow(box: tuple[float, float, float, float], by: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    dx, dy = by * (x1 - x0) / 2, by * (y1 - y0) / 2
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


def choose_threshold(cells: CellSet, settings: TrainSettings) -> tuple[float, float, float, float]:
    """Out of fold (threshold, photo recall, negative-frame rate, far-from-cart photo rate); folds
    group whole photos and whole clips."""
    x, y, image = cells.arrays()
    groups = sorted(set(cells.group))
    fold_of_group = {g: i % settings.folds for i, g in enumerate(groups)}
    fold = np.array([fold_of_group[cells.group[i]] for i in image])
    oof = np.zeros(len(y), np.float32)
    for k in range(settings.folds):
        test = fold == k
        if not test.any() or len(set(y[~test].tolist())) < 2:
            continue
        model = fit(x[~test], y[~test], settings.C)
        oof[test] = model.predict_proba(x[test])[:, 1]
    count = len(cells.negative_image)
    negative = np.asarray(cells.negative_image)
    cart = image_max(np.where(y == 1, oof, 0.0).astype(np.float32), image, count)[~negative]
    far = image_max(np.where(np.concatenate(cells.far), oof, 0.0).astype(np.float32), image, count)
    # the highest threshold that keeps target_recall of the photos: the k-th best photo's cart score
    k = max(math.ceil(settings.target_recall * len(cart)), 1)
    threshold = float(min(max(np.sort(cart)[::-1][k - 1], 0.5), 0.999))
    recall = float(np.mean(cart >= threshold))
    return (threshold, recall, float(np.mean(far[negative] >= threshold)),
            float(np.mean(far[~negative] >= threshold)))


def train(folder: Path, cache: AssetCache, settings: TrainSettings = TrainSettings(),
          split_dir: Path = SPLIT_DIR) -> TrainResult:
    """Fit the cell classifier on the training split; nothing is written."""
    _sklearn()
    t0 = time.perf_counter()
    train_names, _val = read_split(split_dir)
    if settings.max_train_photos is not None:
        train_names = train_names[:settings.max_train_photos]
    photos = read_photos(folder, train_names)
    extractor = FeatureExtractor(settings.features_model, settings.feature_tensors, cache)
    cells = build_cells(extractor, photos, cache, settings)
    t1 = time.perf_counter()
    threshold, recall, rate, far_rate = choose_threshold(cells, settings)
    t2 = time.perf_counter()
    x, y, _ = cells.arrays()
    if not (y == 1).any():
        raise TrainingError(f"{folder}: no thela cells in the {len(photos)} training photos")
    model = fit(x, y, settings.C)
    data = to_onnx(model, x.shape[1])
    t3 = time.perf_counter()
    log.info("stall model: %d cells (%d cart), threshold %.4f", len(y), int((y == 1).sum()), threshold)
    return TrainResult(model_bytes=data, threshold=threshold, settings=settings, train_photos=len(photos),
                       negative_frames=int(sum(cells.negative_image)), cells=len(y),
                       positive_cells=int((y == 1).sum()), oof_photo_recall=recall, oof_negative_rate=rate,
                       oof_far_rate=far_rate,
                       seconds={"features": round(t1 - t0, 1), "threshold_cv": round(t2 - t1, 1),
                                "fit_export": round(t3 - t2, 1)})


def spec_for(result: TrainResult, name: str, file: str, sha256: str, size: int, card: str) -> SignalSpec:
    return SignalSpec(name=name, file=file, sha256=sha256, size=size,
                      licence="trained by this project; data: vendor_carts (upstream MIT, internal use only)",
                      card=card, features_model=result.settings.features_model,
                      feature_tensors=result.settings.feature_tensors,
                      threshold=math.floor(result.threshold * 1e4) / 1e4,
                      min_cells=result.settings.min_cells)


def check_loadable(path: Path) -> None:
    """The exported file loads in ONNX Runtime and gives a probability per row."""
    try:
        probs = CellClassifier(path)(np.zeros((2, 384), np.float32))
    except Exception as exc:
        raise AssetError(f"{path}: the exported classifier does not run: {exc}") from exc
    if probs.shape != (2,):
        raise AssetError(f"{path}: expected 2 probabilities, got shape {probs.shape}")
