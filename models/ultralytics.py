"""Ultralytics-format YOLO exports (YOLOv5u/v8/v11 ``export(format="onnx")``) — what users bring.

Two output layouts, told apart by shape:

* ``[N, 4 + C, A]``: per anchor ``cx, cy, w, h`` in network-input pixels, then C class scores
  (sigmoid applied, no objectness); NMS is ours.
* ``[N, K, 6]`` (NMS-free exports, YOLOv10/YOLO26 or ``nms=True``): ``x1, y1, x2, y2, score,
  class`` already suppressed; rows below the score threshold are padding.

Default input as Ultralytics exports it: RGB, 0..1, letterbox centred with pad 114.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.base import Candidates, OnnxDetector, best_class
from models.registry import InputSpec


def ultralytics_input(width: int = 640, height: int = 640) -> InputSpec:
    return InputSpec(width=width, height=height, colour="rgb", mean=(0, 0, 0), std=(255, 255, 255),
                     resize="letterbox", pad_value=114, anchor="center")


def is_end_to_end(shape: tuple[int, ...] | list[int | str | None]) -> bool:
    """``[N, K, 6]`` with K not 6 — the NMS-free layout (``[N, 4 + C, A]`` has A >> 6)."""
    return len(shape) == 3 and shape[2] == 6 and shape[1] != 6


class UltralyticsDetector(OnnxDetector):
    def decode(self, outputs: list[npt.NDArray[np.float32]]) -> Candidates:
        pred = outputs[0]
        if pred.ndim != 2:
            raise self._shape_error("Ultralytics output", "[N, 4 + classes, anchors] or [N, K, 6]",
                                    (-1, *pred.shape))
        if pred.shape[1] == 6 and pred.shape[0] != 6:
            return self._decode_end_to_end(pred)
        if pred.shape[0] < 5:
            raise self._shape_error("Ultralytics output", "[N, 4 + classes, anchors] or [N, K, 6]",
                                    (-1, *pred.shape))
        rows = pred.T  # (A, 4 + C)
        score, cls = best_class(rows[:, 4:])
        keep = score >= self.score_threshold
        box = rows[keep, :4]
        half = box[:, 2:4] / 2
        xyxy = np.concatenate([box[:, :2] - half, box[:, :2] + half], axis=1)
        return xyxy, score[keep], cls[keep]

    def _decode_end_to_end(self, pred: npt.NDArray[np.float32]) -> Candidates:
        keep = pred[:, 4] >= self.score_threshold
        rows = pred[keep]
        return rows[:, :4].copy(), rows[:, 4].astype(np.float32), rows[:, 5].round().astype(np.int32)
