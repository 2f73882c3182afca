"""Ultralytics-format decoding checked exactly against hand-made output tensors.

The model is a constant: its output is known, so every decoded box is computed by hand here,
including the letterbox un-mapping. Picture 1280x640 -> scale 0.5, content 640x320 centred in
640x640, so 160 px of padding above: ``x = xn / 0.5``, ``y = (yn - 160) / 0.5``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import constant_model, dynamic_batch_model

from core.errors import ModelError
from models.base import place, to_tensor
from models.factory import load_detector
from models.ultralytics import ultralytics_input

IMAGE = np.zeros((640, 1280, 3), np.uint8)  # H=640, W=1280


def raw_head(rows: list[tuple[float, float, float, float, int, float]], nc: int = 80) -> np.ndarray:
    """[1, 4 + nc, A] from (cx, cy, w, h, class, score) rows in network pixels."""
    out = np.zeros((1, 4 + nc, len(rows)), np.float32)
    for a, (cx, cy, w, h, cls, score) in enumerate(rows):
        out[0, :4, a] = (cx, cy, w, h)
        out[0, 4 + cls, a] = score
        out[0, 4 + (cls + 1) % nc, a] = score / 3  # a weaker second class must not win
    return out


ROWS = [
    (320, 320, 100, 200, 5, 0.9),   # bus in the middle      -> [540, 120, 740, 520]
    (100, 330, 40, 60, 0, 0.8),     # person                 -> [160, 280, 240, 400]
    (322, 318, 100, 200, 5, 0.7),   # same bus, weaker: suppressed by NMS
    (320, 320, 96, 196, 2, 0.6),    # a car on the bus: kept with per-class NMS only
    (620, 200, 80, 40, 7, 0.5),     # truck over the right edge -> [1160, 40, 1320, 120] clipped to 1280
    (400, 400, 50, 50, 3, 0.1),     # below the threshold
]


@pytest.fixture
def raw_model(tmp_path: Path) -> Path:
    return constant_model(tmp_path / "yolo_raw.onnx", raw_head(ROWS))


def test_raw_head_decodes_exactly(raw_model: Path) -> None:
    det = load_detector(raw_model, score_threshold=0.25, iou_threshold=0.5)
    (d,) = det.detect([IMAGE])
    assert d.class_id.tolist() == [5, 0, 2, 7]
    np.testing.assert_array_equal(d.score, np.float32([0.9, 0.8, 0.6, 0.5]))
    np.testing.assert_array_equal(d.xyxy, np.float32([
        [540, 120, 740, 520],
        [160, 280, 240, 400],
        [544, 124, 736, 516],
        [1160, 40, 1280, 120],
    ]))


def test_class_agnostic_nms_drops_the_overlapping_other_class(raw_model: Path) -> None:
    (d,) = load_detector(raw_model, score_threshold=0.25, class_agnostic=True).detect([IMAGE])
    assert d.class_id.tolist() == [5, 0, 7]


def test_score_threshold_is_applied(raw_model: Path) -> None:
    (d,) = load_detector(raw_model, score_threshold=0.75).detect([IMAGE])
    assert d.class_id.tolist() == [5, 0]


def test_fixed_batch_model_loops_over_a_batch_of_different_sizes(raw_model: Path) -> None:
    tall = np.zeros((1280, 640, 3), np.uint8)  # scale 0.5, 160 px padding left and right
    wide, portrait = load_detector(raw_model).detect([IMAGE, tall])
    np.testing.assert_array_equal(wide.xyxy[0], [540, 120, 740, 520])
    # x = (xn - 160) / 0.5, y = yn / 0.5
    np.testing.assert_array_equal(portrait.xyxy[0], [220, 440, 420, 840])


def test_dynamic_batch_model_runs_the_batch_in_one_call(tmp_path: Path) -> None:
    known = raw_head(ROWS[:2])
    gain = np.zeros_like(known)
    gain[0, 4 + 5, 0] = 0.05   # the bus score rises with the image's mean (0..1 after /255)
    gain[0, 0, 1] = 64.0       # the person moves right by 64 * mean network pixels
    det = load_detector(dynamic_batch_model(tmp_path / "dyn.onnx", known, gain), score_threshold=0.25)
    calls = []
    run = det.session.run
    det.session.run = lambda *a, **k: calls.append(a[1]["images"].shape) or run(*a, **k)  # type: ignore[method-assign]
    dark, bright = np.zeros((640, 640, 3), np.uint8), np.full((640, 640, 3), 255, np.uint8)
    d_dark, d_bright, d_dark2 = det.detect([dark, bright, dark])
    assert calls == [(3, 3, 640, 640)]
    np.testing.assert_allclose([d_dark.score[0], d_bright.score[0], d_dark2.score[0]], [0.9, 0.95, 0.9], rtol=1e-6)
    np.testing.assert_array_equal(d_dark.xyxy[1], [80, 300, 120, 360])  # square picture: scale 1, no pad
    np.testing.assert_array_equal(d_bright.xyxy[1], [144, 300, 184, 360])


def test_end_to_end_layout_decodes_exactly(tmp_path: Path) -> None:
    out = np.zeros((1, 300, 6), np.float32)
    out[0, 0] = (270, 220, 370, 420, 0.9, 5)
    out[0, 1] = (80, 300, 120, 360, 0.8, 0)
    out[0, 2] = (0, 0, 10, 10, 0.2, 9)  # below the threshold; the rest is zero padding
    det = load_detector(constant_model(tmp_path / "yolo_e2e.onnx", out), score_threshold=0.3)
    (d,) = det.detect([IMAGE])
    assert d.class_id.tolist() == [5, 0]
    np.testing.assert_array_equal(d.score, np.float32([0.9, 0.8]))
    np.testing.assert_array_equal(d.xyxy, np.float32([[540, 120, 740, 520], [160, 280, 240, 400]]))


def test_input_size_comes_from_the_model_file(tmp_path: Path) -> None:
    out = np.zeros((1, 84, 2100), np.float32)  # 320x320 export: 40^2 + 20^2 + 10^2 anchors
    det = load_detector(constant_model(tmp_path / "yolo320.onnx", out, input_shape=(1, 3, 320, 320)))
    assert det.input_size == (320, 320)
    assert len(det.detect([IMAGE])[0]) == 0


def test_letterbox_preprocessing_is_rgb_unit_scale_centred_with_pad_114() -> None:
    spec = ultralytics_input(640, 640)
    image = np.empty((640, 1280, 3), np.uint8)
    image[:] = (10, 20, 30)  # BGR
    canvas, placement = place(image, spec)
    assert (placement.scale_x, placement.scale_y, placement.pad_x, placement.pad_y) == (0.5, 0.5, 0.0, 160.0)
    tensor = to_tensor([canvas], spec)
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0, :, 0, 0], [114 / 255] * 3)       # padding above
    np.testing.assert_allclose(tensor[0, :, 320, 320], [30 / 255, 20 / 255, 10 / 255])  # RGB order
    np.testing.assert_allclose(tensor[0, :, 639, 0], [114 / 255] * 3)     # padding below


def test_class_count_from_metadata_tells_a_six_anchor_raw_head_from_nms_free(tmp_path: Path) -> None:
    # 2 classes -> rows 4 + 2 = 6, and 6 anchors: [1, 6, 6] is a raw head, said by the metadata
    out = raw_head([(320, 320, 100, 200, 1, 0.9)] + [(0, 0, 1, 1, 0, 0.0)] * 5, nc=2)
    path = constant_model(tmp_path / "two.onnx", out, metadata={"names": "{0: 'cart', 1: 'umbrella'}"})
    (d,) = load_detector(path, score_threshold=0.5).detect([IMAGE])
    assert d.class_id.tolist() == [1]
    np.testing.assert_array_equal(d.xyxy, np.float32([[540, 120, 740, 520]]))


def test_wrong_class_count_names_expected_and_actual_shapes(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "odd.onnx", np.zeros((1, 10, 8400), np.float32))
    det = load_detector(path, num_classes=80)
    with pytest.raises(ModelError, match=r"expected shape \[N, 84, anchors\] or \[N, K, 6\], got \(-1, 10, 8400\)"):
        det.detect([IMAGE])
