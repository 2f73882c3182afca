"""Per-class score thresholds: one rule, applied once per frame by the analyzer (the worker counts what it kept)."""

from __future__ import annotations

import numpy as np
import pytest

from camera_config.schema import Camera, DetectorChoice
from core.coco import CLASS_ID
from core.types import Detections, Frame
from rules.analyzer import CameraAnalyzer
from rules.scores import ScoreThresholds

CHOICE = DetectorChoice(default_score=0.4, class_scores={"car": 0.2, "person": 0.6})


def dets(*rows: tuple[int, float]) -> Detections:
    return Detections(np.tile(np.array([[10, 10, 50, 50]], np.float32), (len(rows), 1)),
                      np.array([s for _, s in rows], np.float32), np.array([c for c, _ in rows], np.int32))


@pytest.mark.parametrize(("class_id", "score", "kept"), [
    (CLASS_ID["car"], 0.2, True),        # its own threshold, reached exactly
    (CLASS_ID["car"], 0.19, False),
    (CLASS_ID["person"], 0.55, False),   # stricter than the default
    (CLASS_ID["person"], 0.6, True),
    (CLASS_ID["dog"], 0.4, True),        # no threshold of its own: default_score
    (CLASS_ID["dog"], 0.39, False),
    (79, 0.99, True),                    # the last COCO class
    (80, 0.99, False),                   # outside COCO-80: no name, no threshold, dropped
    (-1, 0.99, False),
])
def test_one_rule_per_class(class_id: int, score: float, kept: bool) -> None:
    out = ScoreThresholds(CHOICE)(dets((class_id, score)))
    assert len(out) == (1 if kept else 0)


@pytest.mark.parametrize(("class_id", "score", "kept"), [
    (CLASS_ID["person"], 0.25, True),    # under its 0.6 threshold, from ignore_score (0.2) up
    (CLASS_ID["person"], 0.19, False),
    (CLASS_ID["car"], 0.2, True),        # its own threshold
    (80, 0.99, False),
])
def test_weak_detections_reach_down_to_the_ignore_score(class_id: int, score: float, kept: bool) -> None:
    thresholds = ScoreThresholds(CHOICE)
    assert len(thresholds.weak(dets((class_id, score)))) == (1 if kept else 0)
    low = ScoreThresholds(DetectorChoice(default_score=0.4, class_scores={"car": 0.1}, ignore_score=0.3))
    assert len(low.weak(dets((CLASS_ID["car"], 0.15)))) == 1  # a class threshold below the ignore score


def test_empty_stays_empty() -> None:
    assert len(ScoreThresholds(CHOICE)(Detections.empty())) == 0


def test_the_analyzer_tracks_what_the_thresholds_keep() -> None:
    camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "G",
                                    "detector": CHOICE.model_dump()})
    analyzer = CameraAnalyzer(camera)
    frame = Frame("cam-1", 0.0, 0.0, np.zeros((100, 100, 3), np.uint8))
    analyzer.process(frame, dets((CLASS_ID["car"], 0.3), (CLASS_ID["person"], 0.5), (80, 0.9)))
    assert analyzer.last is not None and analyzer.last.detections == 1
    assert analyzer.last.kept.class_id.tolist() == [CLASS_ID["car"]]
