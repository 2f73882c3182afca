"""The shipped detectors on real photos, through the API and the real ``patrol detect`` CLI.

Expected boxes: YOLOX-Nano and PicoDet-S-416 as recorded in ../shared/models/PROVENANCE.md;
NanoDet-m-416 as measured here (weaker: a looser bus box, lower person scores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.assets import REPO_ROOT, AssetCache
from core.coco import CLASS_ID
from core.types import Detections
from models.base import Detector, create_session
from models.factory import load_detector
from models.registry import get_spec
from models.yolox import YoloxDetector

BUS, PERSON = CLASS_ID["bus"], CLASS_ID["person"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# model, expected bus box, min IoU, min persons (score >= 0.3), min bus score
EXPECTED = [
    ("yolox_nano_416", [13, 231, 801, 735], 0.8, 3, 0.85),
    ("picodet_s_416_coco", [11, 236, 806, 742], 0.8, 4, 0.7),
    ("nanodet_m_416", [13, 231, 801, 735], 0.7, 3, 0.55),  # measured: bus 0.64 [141,222,775,731]
]


def check_bus_scene(xyxy: np.ndarray, score: np.ndarray, cls: np.ndarray, bus: list[int], min_iou: float,
                    persons: int, bus_score: float) -> None:
    buses = np.flatnonzero(cls == BUS)
    assert len(buses) >= 1, "no bus found"
    best = max(buses, key=lambda i: iou(xyxy[i], np.array(bus, float)))
    assert iou(xyxy[best], np.array(bus, float)) >= min_iou, xyxy[best]
    assert score[best] >= bus_score
    people = xyxy[cls == PERSON]
    assert len(people) >= persons
    # the three standing people are on the pavement in front of the bus, full height
    tall = [p for p in people if p[3] - p[1] > 350 and p[3] > 780]
    assert len(tall) >= 3


@pytest.fixture(scope="module")
def bus_image(asset_path: Callable[[str], Path]) -> np.ndarray:
    image = cv2.imread(str(asset_path("bus_jpg")))
    assert image is not None and image.shape == (1080, 810, 3)
    return image


@pytest.mark.parametrize(("model", "bus", "min_iou", "persons", "bus_score"), EXPECTED)
def test_api_finds_bus_and_people(model: str, bus: list[int], min_iou: float, persons: int,
                                  bus_score: float, bus_image: np.ndarray) -> None:
    detector = load_detector(model, score_threshold=0.3)
    assert isinstance(detector, Detector)
    (dets,) = detector.detect([bus_image])
    assert isinstance(dets, Detections)
    check_bus_scene(dets.xyxy, dets.score, dets.class_id, bus, min_iou, persons, bus_score)
    assert (dets.score >= 0.3).all() and (np.diff(dets.score) <= 0).all()  # thresholded, best first
    assert (dets.xyxy[:, [0, 2]] <= 810).all() and (dets.xyxy[:, [1, 3]] <= 1080).all()


@pytest.mark.parametrize(("model", "bus", "min_iou", "persons", "bus_score"), EXPECTED)
def test_cli_prints_json_lines(model: str, bus: list[int], min_iou: float, persons: int, bus_score: float,
                               asset_path: Callable[[str], Path]) -> None:
    image = asset_path("bus_jpg")
    asset_path(model)  # cached before the subprocess starts: the CLI run only detects
    done = subprocess.run([sys.executable, "-m", "patrol", "detect", "--model", model, str(image),
                           "--score", "0.3"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows and all(set(r) == {"class", "score", "xyxy"} for r in rows)
    xyxy = np.array([r["xyxy"] for r in rows], float)
    score = np.array([r["score"] for r in rows])
    cls = np.array([CLASS_ID[r["class"]] for r in rows])
    check_bus_scene(xyxy, score, cls, bus, min_iou, persons, bus_score)


def square_yolox(score_threshold: float = 0.3) -> YoloxDetector:
    """YOLOX-Nano on the full 416x416 canvas, as PROVENANCE.md recorded it (no ``fit``)."""
    spec = get_spec("yolox_nano_416")
    square = spec.input.model_copy(update={"fit": 0})
    return YoloxDetector(spec.name, create_session(AssetCache().fetch(spec.asset())), square,
                         strides=spec.strides, score_threshold=score_threshold)


def test_yolox_matches_recorded_scores(bus_image: np.ndarray) -> None:
    (dets,) = square_yolox().detect([bus_image])
    assert dets.class_id[:4].tolist() == [BUS, PERSON, PERSON, PERSON]
    np.testing.assert_allclose(dets.score[:4], [0.91, 0.855, 0.81, 0.69], atol=0.01)
    np.testing.assert_allclose(dets.xyxy[1], [50, 394, 214, 898], atol=1.5)


def test_batch_equals_one_by_one_and_boxes_follow_the_image_size(
        yolox_detector: Detector, bus_image: np.ndarray, asset_path: Callable[[str], Path]) -> None:
    zidane = cv2.imread(str(asset_path("zidane_jpg")))
    assert zidane is not None
    half = cv2.resize(bus_image, (405, 540), interpolation=cv2.INTER_AREA)
    batch = yolox_detector.detect([bus_image, zidane, half])
    assert len(batch) == 3
    for got, image in zip(batch, [bus_image, zidane], strict=False):
        (alone,) = yolox_detector.detect([image])
        np.testing.assert_array_equal(got.class_id, alone.class_id)
        np.testing.assert_allclose(got.xyxy, alone.xyxy, atol=1e-3)
    # zidane: two persons, wide 1280x720 picture, letterboxed with padding below
    assert (batch[1].class_id == PERSON).sum() >= 2 and batch[1].xyxy[:, 2].max() > 1000
    # the half-size picture gives the same bus at half the coordinates (resampling noise allowed)
    bus_half = batch[2].xyxy[batch[2].class_id == BUS][0]
    assert iou(bus_half * 2, batch[0].xyxy[batch[0].class_id == BUS][0]) > 0.9


@pytest.mark.parametrize("model", ["picodet_s_320_coco", "nanodet_m_320", "fastestdet_352"])
def test_smaller_models_find_the_bus_and_people(model: str, bus_image: np.ndarray) -> None:
    (dets,) = load_detector(model, score_threshold=0.3).detect([bus_image])
    buses = dets.xyxy[dets.class_id == BUS]
    assert len(buses) and max(iou(b, np.array([13, 231, 801, 735], float)) for b in buses) >= 0.7
    assert (dets.class_id == PERSON).sum() >= 3


def test_blank_frame_gives_empty_detections(yolox_detector: Detector) -> None:
    (dets,) = yolox_detector.detect([np.full((360, 640, 3), 127, np.uint8)])
    assert len(dets) == 0 and dets.xyxy.shape == (0, 4)
    assert yolox_detector.detect([]) == []


def test_yolox_on_a_cut_canvas_finds_what_the_full_square_finds(
        yolox_detector: Detector, bus_image: np.ndarray, asset_path: Callable[[str], Path]) -> None:
    """``fit: 32``: a 16:9 frame runs on 416x256 and a portrait one on 320x416 instead of 416x416;
    the picture keeps its scale, only padding goes, so the detections stay those of the square."""
    import av

    assert getattr(yolox_detector, "fit", 0) == 32
    with av.open(str(asset_path("vehicle_counting_input_video"))) as video:
        street = [f.to_ndarray(format="bgr24") for _, f in zip(range(60), video.decode(video=0), strict=False)][::20]
    zidane = cv2.imread(str(asset_path("zidane_jpg")))
    square = square_yolox()
    for image in [bus_image, zidane, *street]:
        (cut,) = yolox_detector.detect([image])
        (full,) = square.detect([image])
        strong = full.score >= 0.5  # a clear detection on the square is found on the cut canvas
        for box, cls, score in zip(full.xyxy[strong], full.class_id[strong], full.score[strong], strict=True):
            same = [i for i in range(len(cut)) if cut.class_id[i] == cls and iou(cut.xyxy[i], box) > 0.9]
            assert same, (image.shape, cls, box)
            assert abs(float(cut.score[same[0]]) - float(score)) < 0.05
        assert abs(len(cut) - len(full)) <= max(1, len(full) // 5)  # the weak tail may differ a little
