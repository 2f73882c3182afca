"""The learned stall signal (models/stall_signal.py) and its training (models/stall_train.py).

Exact parts first: cells are labelled from YOLO boxes as documented, regions are the connected
components over the threshold, a classifier whose sha256 differs from the registry is refused, the
split is fixed and disjoint. Then the committed model on real photos (yolox_nano_416 features):
a validation photo with a large cart gets a region on the cart, a cart-free street frame does not
reach the threshold everywhere. Last, the smoke training CI runs: ``patrol train stall --smoke``
end to end into a temporary folder, twice, with the same bytes (training is deterministic).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import AssetError
from models.base import Placement
from models.stall_signal import (
    MODELS_DIR,
    CellClassifier,
    CellFeatures,
    StallScorer,
    load_signal_spec,
    regions_of,
    sha256_of,
)
from models.stall_train import SPLIT_DIR, cell_labels, read_photos, read_split


def grid_cells(rows: int, cols: int, size: float = 16.0) -> CellFeatures:
    gy, gx = np.mgrid[0:rows, 0:cols]
    boxes = np.stack([gx.ravel() * size, gy.ravel() * size, (gx.ravel() + 1) * size, (gy.ravel() + 1) * size],
                     axis=1).astype(np.float32)
    return CellFeatures(np.zeros((rows * cols, 384), np.float32), boxes, (rows, cols),
                        Placement(1.0, 1.0, 0.0, 0.0, int(cols * size), int(rows * size)))


def test_cells_in_the_shrunk_box_are_cart_the_rim_is_left_out() -> None:
    cells = grid_cells(4, 4)  # 64x64 px, cell centres at 8, 24, 40, 56
    labels = cell_labels(cells, [(0.0, 0.0, 64.0, 32.0)], shrink=0.2).reshape(4, 4)
    # x core 12.8..51.2 keeps centres 24 and 40; y core 6.4..25.6 keeps centres 8 and 24
    assert labels[:2].tolist() == [[-1, 1, 1, -1], [-1, 1, 1, -1]]
    assert (labels[2:] == 0).all()


def test_regions_are_connected_components_over_the_threshold() -> None:
    cells = grid_cells(3, 4)
    probs = np.array([0.99, 0.97, 0.1, 0.1,
                      0.1, 0.98, 0.1, 0.1,
                      0.1, 0.1, 0.1, 0.96], np.float32)
    regions = regions_of(probs, cells, 0.95)
    assert [(r.xyxy, round(r.score, 2), r.cells) for r in regions] == [
        ((0.0, 0.0, 32.0, 32.0), 0.99, 3), ((48.0, 32.0, 64.0, 48.0), 0.96, 1)]
    assert [r.cells for r in regions_of(probs, cells, 0.95, min_cells=2)] == [3]
    assert regions_of(probs, cells, 0.995) == []


def test_committed_classifier_matches_its_registry_entry(tmp_path: Path) -> None:
    spec = load_signal_spec()
    path = MODELS_DIR / spec.file
    assert sha256_of(path) == spec.sha256 and path.stat().st_size == spec.size
    assert path.stat().st_size <= 5 * 1024 * 1024
    assert (MODELS_DIR / spec.card).is_file()
    tampered = tmp_path / spec.file
    tampered.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(AssetError, match="sha256"):
        CellClassifier(tampered, spec.sha256)


def test_split_is_fixed_disjoint_and_covers_the_photos(asset_path) -> None:
    train, val = read_split(SPLIT_DIR)
    photos = sorted(p.name for p in (asset_path("vendor_carts") / "images" / "train").glob("*.jpg"))
    assert sorted(train + val) == photos
    assert (len(train), len(val)) == (101, 50)


@pytest.fixture(scope="module")
def scorer() -> StallScorer:
    return StallScorer()


def test_scorer_finds_the_cart_of_a_validation_photo(asset_path, scorer: StallScorer) -> None:
    folder = asset_path("vendor_carts")
    _train, val = read_split(SPLIT_DIR)
    photos = read_photos(folder, val)
    # the validation photo with the largest labelled cart: the clearest case
    photo = max(photos, key=lambda p: max(((b[2] - b[0]) * (b[3] - b[1]) for b in p.thela), default=0.0))
    image = cv2.imread(str(photo.path))
    assert image is not None, photo.path
    regions = scorer.regions(np.asarray(image, np.uint8))
    print(f"\n{photo.name}: {[(tuple(round(v) for v in r.xyxy), round(r.score, 3)) for r in regions]}")
    cart = max(photo.thela, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    assert any(min(r.xyxy[2], cart[2]) > max(r.xyxy[0], cart[0]) and min(r.xyxy[3], cart[3]) > max(r.xyxy[1], cart[1])
               for r in regions)
    assert all(r.score >= scorer.threshold for r in regions)


def test_scorer_on_a_street_frame_is_not_everywhere(asset_path, scorer: StallScorer) -> None:
    cap = cv2.VideoCapture(str(asset_path("car_detection")))
    ok, frame = cap.read()
    cap.release()
    assert ok
    probs, cells = scorer.cell_probs(np.asarray(frame, np.uint8))
    print(f"\ncar_detection frame 0: max cell probability {probs.max():.3f}, "
          f"{int((probs >= scorer.threshold).sum())} of {len(probs)} cells over {scorer.threshold}")
    assert probs.shape == (cells.grid[0] * cells.grid[1],)
    assert (probs >= scorer.threshold).mean() < 0.05


@pytest.mark.slow
def test_smoke_training_is_deterministic_and_loads(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the train extra (pip install -e '.[train]') is in the dev extra")
    from patrol.cli import main

    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        assert main(["--log-level", "warning", "train", "stall", "--smoke", "--skip-measure", "--out", str(out),
                     "--json", str(tmp_path / f"run{k}.json")]) == 0
        outs.append(out)
        card = (out / "stall_thela_lr.md").read_text(encoding="utf-8")
        assert "12 training photos" in card
    first, second = (json.loads((tmp_path / f"run{k}.json").read_text()) for k in range(2))
    assert first["sha256"] == second["sha256"] == sha256_of(outs[0] / "stall_thela_lr.onnx")
    assert first["threshold"] == second["threshold"]
    probs = CellClassifier(outs[0] / "stall_thela_lr.onnx")(np.zeros((3, 384), np.float32))
    assert probs.shape == (3,) and ((probs >= 0) & (probs <= 1)).all()
    # the committed model and registry are not touched by a smoke run
    assert sha256_of(MODELS_DIR / "stall_thela_lr.onnx") == load_signal_spec().sha256
