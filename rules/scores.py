"""A camera's per-class score thresholds (``detector.class_scores`` over ``default_score``), in one place.

The analyzer applies them once per frame (what the tracker and the rules see, and what the
worker's per-class detection counts read from its report); a detection is kept by this one rule:

* a COCO class (id 0..79) is kept when its score reaches the camera's threshold for that class
  name, or ``default_score`` when the config names none;
* any other class id is dropped: the config names classes by COCO name and every rule and check
  selects classes by COCO name, so an id outside the 80 (a model with another label set) has
  neither a threshold nor a rule that could read it.

:meth:`ScoreThresholds.weak` keeps more for one purpose: the background model's people and
vehicles (``detector.ignore_score``), where a missed person costs a false static object and a
weak one only pauses learning under its box.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from camera_config.schema import DetectorChoice
from core.coco import COCO80
from core.types import Detections


class ScoreThresholds:
    """``thresholds(detections) -> detections`` kept under one camera's detector choice."""

    def __init__(self, choice: DetectorChoice) -> None:
        self.by_class: npt.NDArray[np.float32] = np.array(
            [choice.class_scores.get(name, choice.default_score) for name in COCO80], dtype=np.float32)
        self.weak_by_class: npt.NDArray[np.float32] = np.minimum(self.by_class, np.float32(choice.ignore_score))

    def __call__(self, detections: Detections) -> Detections:
        return _kept(detections, self.by_class)

    def weak(self, detections: Detections) -> Detections:
        """The detections kept by the class thresholds, and the others from ``ignore_score`` up:
        what the background model is told are people and vehicles (no rule acts on the weak ones)."""
        return _kept(detections, self.weak_by_class)


def _kept(detections: Detections, by_class: npt.NDArray[np.float32]) -> Detections:
    if len(detections) == 0:
        return detections
    cls = detections.class_id
    coco = (cls >= 0) & (cls < len(COCO80))
    floor = by_class[np.where(coco, cls, 0)]
    return detections[coco & (detections.score >= floor)]
