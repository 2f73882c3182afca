"""YOLOX, GFL (PicoDet/NanoDet) and FastestDet decoders on hand-made outputs, checked exactly,
plus the errors a wrong file or a wrong input produces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from onnx_fixtures import constant_model

from core.errors import ModelError
from core.types import Detections
from models.base import create_session, nms, pick_providers
from models.factory import load_detector
from models.fastestdet import FastestDetDetector
from models.gfl import GflDetector
from models.registry import get_spec
from models.yolox import YoloxDetector

WIDE = np.zeros((416, 832, 3), np.uint8)  # letterbox top-left: scale 0.5, no pad; stretch: sx 0.5, sy 1


def test_yolox_grid_decode(tmp_path: Path) -> None:
    out = np.zeros((1, 3549, 85), np.float32)
    # stride 8 grid is 52x52; cell (x=3, y=2) is anchor 2 * 52 + 3
    out[0, 107, :4] = (0.5, 0.25, math.log(2), math.log(4))  # xy=(28, 18), wh=(16, 32)
    out[0, 107, 4], out[0, 107, 5 + 7] = 0.9, 0.8
    # stride 32 grid is 13x13, after 52^2 + 26^2 anchors; cell (x=12, y=5): xy=(384, 160), wh=32
    out[0, 2704 + 676 + 5 * 13 + 12, :5] = (0.0, 0.0, 0.0, 0.0, 0.95)
    out[0, 2704 + 676 + 5 * 13 + 12, 5 + 2] = 0.9
    # cell (x=12, y=12) lies in the letterbox padding below the picture: clipped to nothing, dropped
    out[0, 2704 + 676 + 12 * 13 + 12, :5] = (0.0, 0.0, 0.0, 0.0, 0.95)
    out[0, 2704 + 676 + 12 * 13 + 12, 5 + 3] = 0.9
    spec = get_spec("yolox_nano_416")
    path = constant_model(tmp_path / "yolox.onnx", out, (1, 3, 416, 416), "images", "output")
    det = YoloxDetector("t", create_session(path), spec.input, strides=spec.strides, score_threshold=0.3)
    (d,) = det.detect([WIDE])
    assert d.class_id.tolist() == [2, 7]
    np.testing.assert_allclose(d.score, [0.855, 0.72], rtol=1e-6)
    # letterbox top-left at scale 0.5: [368, 144, 400, 176] -> [736, 288, 800, 352]; [20, 2, 36, 34] -> ...
    np.testing.assert_allclose(d.xyxy, [[736, 288, 800, 352], [40, 4, 72, 68]], rtol=1e-6)


def test_yolox_grid_decode_on_a_cut_canvas(tmp_path: Path) -> None:
    """``fit: 32``: the 832x416 picture (scale 0.5 -> 416x208) runs on a 416x224 canvas, whose
    grids are 52x28, 26x14 and 13x7 (1911 anchors), not the square's 3549."""
    out = np.zeros((1, 1911, 85), np.float32)
    out[0, 107, :4] = (0.5, 0.25, math.log(2), math.log(4))  # stride 8, cell (3, 2): xy=(28, 18)
    out[0, 107, 4], out[0, 107, 5 + 7] = 0.9, 0.8
    last = 52 * 28 + 26 * 14 + 5 * 13 + 12  # stride 32, cell (12, 5): xy=(384, 160), wh=32
    out[0, last, :5] = (0.0, 0.0, 0.0, 0.0, 0.95)
    out[0, last, 5 + 2] = 0.9
    spec = get_spec("yolox_nano_416")
    assert spec.input.fit == 32
    path = constant_model(tmp_path / "yolox.onnx", out, (1, 3, 416, 416), "images", "output")
    det = YoloxDetector("t", create_session(path, free_size=True), spec.input, strides=spec.strides,
                        score_threshold=0.3)
    assert det.fit == 32
    (d,) = det.detect([WIDE])
    assert d.class_id.tolist() == [2, 7]
    np.testing.assert_allclose(d.xyxy, [[736, 288, 800, 352], [40, 4, 72, 68]], rtol=1e-6)
    # a model whose input size is fixed runs every picture on the full canvas
    fixed = YoloxDetector("t", create_session(path), spec.input, strides=spec.strides)
    assert fixed.fit == 0
    with pytest.raises(ModelError, match=r"expected shape \(3549, 5 \+ classes\), got \(1911, 85\)"):
        fixed.detect([WIDE])


def gfl_outputs(counts: list[int], bins: int = 8) -> dict[str, np.ndarray]:
    out = {f"cls{i}": np.zeros((1, n, 80), np.float32) for i, n in enumerate(counts)}
    out |= {f"reg{i}": np.zeros((1, n, 4 * bins), np.float32) for i, n in enumerate(counts)}
    return out


def test_gfl_dfl_decode_matches_outputs_by_shape(tmp_path: Path) -> None:
    spec = get_spec("picodet_s_416_coco")
    outs = gfl_outputs([2704, 676, 169, 49])
    outs["cls0"][0, 107, 0] = 0.9  # stride 8, cell (3, 2): centre (28, 20)
    reg = np.zeros((4, 8), np.float32)
    for side, k in enumerate((2, 1, 3, 4)):  # distances 16, 8, 24, 32
        reg[side, k] = 50.0
    outs["reg0"][0, 107] = reg.ravel()
    outs["cls3"][0, 0, 5] = 0.6  # stride 64 (7x7 grid, 416/64 rounded up), cell (0, 0): centre (32, 32)
    outs["reg3"][0, 0] = np.tile(np.eye(8, dtype=np.float32)[1] * 50, 4)  # 64 on every side
    # exporters differ in output order: shuffle, the decoder must pair them by shape
    shuffled = {k: outs[k] for k in ["reg2", "cls3", "reg0", "cls1", "cls0", "reg3", "cls2", "reg1"]}
    path = constant_model(tmp_path / "gfl.onnx", shuffled, (1, 3, 416, 416), "image")
    det = GflDetector("t", create_session(path), spec.input, strides=spec.strides, score_threshold=0.3)
    (d,) = det.detect([WIDE])
    assert d.class_id.tolist() == [0, 5]
    # stretch: x / 0.5, y / 1; [12, 12, 52, 52] -> [24, 12, 104, 52]; [-32, -32, 96, 96] -> clipped
    np.testing.assert_allclose(d.xyxy, [[24, 12, 104, 52], [0, 0, 192, 96]], atol=1e-4)


def test_gfl_without_batch_axis_and_with_a_missing_stride(tmp_path: Path) -> None:
    spec = get_spec("nanodet_m_320")
    outs = {k: v[0] for k, v in gfl_outputs([1600, 400, 100]).items()}  # (A, C) like nanodet_m_320
    outs["cls1"][399, 1] = 0.7  # stride 16 grid 20x20, last cell (19, 19): centre (312, 312)
    outs["reg1"][399] = np.tile(np.eye(8, dtype=np.float32)[0] * 50, 4)  # zero-size box: dropped
    ok = constant_model(tmp_path / "nd.onnx", outs, (1, 3, 320, 320), "image")
    det = GflDetector("t", create_session(ok), spec.input, strides=spec.strides)
    assert len(det.detect([np.zeros((320, 320, 3), np.uint8)])[0]) == 0

    del outs["reg2"]
    broken = constant_model(tmp_path / "nd_broken.onnx", outs, (1, 3, 320, 320), "image")
    det = GflDetector("broken", create_session(broken), spec.input, strides=spec.strides)
    with pytest.raises(ModelError, match=r"model 'broken': expected one class and one box map per stride"):
        det.detect([np.zeros((320, 320, 3), np.uint8)])


def test_fastestdet_cell_decode(tmp_path: Path) -> None:
    spec = get_spec("fastestdet_352")
    out = np.zeros((1, 85, 22, 22), np.float32)
    out[0, 0, 5, 10] = 0.9          # objectness at cell (x=10, y=5)
    out[0, 5 + 2, 5, 10] = 0.8      # class 2 probability; offsets 0 (tanh 0), w = h = sigmoid(0) = 0.5
    path = constant_model(tmp_path / "fd.onnx", out, (1, 3, 352, 352), "input.1", "758")
    det = FastestDetDetector("t", create_session(path), spec.input, score_threshold=0.3)
    (d,) = det.detect([np.zeros((352, 704, 3), np.uint8)])
    assert d.class_id.tolist() == [2]
    np.testing.assert_allclose(d.score, [0.9 ** 0.6 * 0.8 ** 0.4], rtol=1e-6)
    # centre (160, 80), size 176 in network pixels -> [72, -8, 248, 168] -> x / 0.5, y clipped
    np.testing.assert_allclose(d.xyxy, [[144, 0, 496, 168]], rtol=1e-6)


# --- errors ---------------------------------------------------------------------------------------

def test_wrong_output_shape_names_expected_and_actual(tmp_path: Path) -> None:
    spec = get_spec("yolox_nano_416")
    path = constant_model(tmp_path / "small.onnx", np.zeros((1, 100, 85), np.float32), (1, 3, 416, 416))
    det = YoloxDetector("small", create_session(path), spec.input, strides=spec.strides)
    with pytest.raises(ModelError, match=r"model 'small': YOLOX head output: expected shape "
                                         r"\(3549, 5 \+ classes\), got \(100, 85\)"):
        det.detect([WIDE])


def test_input_size_that_disagrees_with_the_spec_is_refused(tmp_path: Path) -> None:
    path = constant_model(tmp_path / "m.onnx", np.zeros((1, 3549, 85), np.float32), (1, 3, 320, 320))
    with pytest.raises(ModelError, match=r"has shape \[1, 3, 320, 320\], expected \[N, 3, 416, 416\]"):
        YoloxDetector("m", create_session(path), get_spec("yolox_nano_416").input)


@pytest.mark.parametrize(("image", "shape"), [
    (np.zeros((10, 10), np.uint8), r"\(10, 10\) dtype uint8"),
    (np.zeros((10, 10, 3), np.float32), r"\(10, 10, 3\) dtype float32"),
    (np.zeros((10, 10, 4), np.uint8), r"\(10, 10, 4\) dtype uint8"),
    (np.zeros((0, 10, 3), np.uint8), r"\(0, 10, 3\) dtype uint8"),
])
def test_bad_image_names_index_expected_and_actual(yolox_detector: object, image: np.ndarray,
                                                   shape: str) -> None:
    good = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ModelError, match=r"image #1: expected a BGR uint8 array of shape \(H, W, 3\), got shape "
                       + shape):
        yolox_detector.detect([good, image])  # type: ignore[attr-defined]


def test_detections_validation_names_expected_and_actual_shapes() -> None:
    with pytest.raises(ValueError, match=r"expected shape \(N, 4\), got \(3, 5\)"):
        Detections(np.zeros((3, 5)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"expected score and class_id of shape \(3,\), got \(2,\) and \(3,\)"):
        Detections(np.zeros((3, 4)), np.zeros(2), np.zeros(3))


def test_unloadable_files_are_model_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match=r"junk.onnx: cannot load ONNX model"):
        load_detector(junk)
    with pytest.raises(ModelError, match=r"neither a registered name .* nor an existing file"):
        load_detector("yolo_does_not_exist")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"\0")
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match=r"optional 'ultralytics' package"):
            load_detector(weights)


def test_thresholds_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"score_threshold must be in \[0, 1\]"):
        load_detector("yolox_nano_416", score_threshold=1.5)


def test_session_threads_and_providers() -> None:
    from models.registry import fetch_model

    session = create_session(fetch_model("fastestdet_352"), threads=1,
                             providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_providers()[-1] == "CPUExecutionProvider"
    assert pick_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]


def test_nms_per_class_and_agnostic() -> None:
    xyxy = np.float32([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]])
    score = np.float32([0.6, 0.9, 0.8, 0.3])
    cls = np.int32([1, 1, 2, 1])
    assert nms(xyxy, score, cls, 0.5).tolist() == [1, 2, 3]
    assert nms(xyxy, score, cls, 0.5, class_agnostic=True).tolist() == [1, 3]
    assert nms(xyxy, score, cls, 0.5, max_det=2).tolist() == [1, 2]
    assert nms(xyxy[:0], score[:0], cls[:0], 0.5).tolist() == []


def test_providers_from_the_host_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU host names its provider once (PATROL_ORT_PROVIDERS); absent here, CPU is used cleanly."""
    monkeypatch.setenv("PATROL_ORT_PROVIDERS", "CUDAExecutionProvider, NoSuchExecutionProvider")
    chosen = pick_providers()
    assert chosen[-1] == "CPUExecutionProvider" and "NoSuchExecutionProvider" not in chosen
    monkeypatch.delenv("PATROL_ORT_PROVIDERS")
    assert pick_providers() == ["CPUExecutionProvider"]


def test_without_the_onnx_package_models_run_as_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    det = load_detector("yolox_nano_416", score_threshold=0.3)
    assert getattr(det, "fit", None) == 0  # fixed 416x416 input: every picture on the full canvas
    (d,) = det.detect([np.full((360, 640, 3), 127, np.uint8)])
    assert len(d) == 0


def test_weights_listed_as_inputs_are_dropped_and_free_size_makes_height_and_width_symbolic() -> None:
    import onnx

    from core.assets import AssetCache
    from models.base import prepared_model

    path = AssetCache().fetch(get_spec("picodet_s_416_coco").asset())
    assert len(onnx.load(str(path)).graph.input) > 1  # the exporter listed its weights as inputs
    model = onnx.load_from_string(prepared_model(path))
    assert [i.name for i in model.graph.input] == ["image"]
    dims = onnx.load_from_string(prepared_model(path, free_size=True)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == [1, 3, "height", "width"]
