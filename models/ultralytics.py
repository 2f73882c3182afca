"""Ultralytics-format YOLO exports (YOLOv5u/v8/v11 ``export(format="onnx")``) — what users bring.

Two output layouts, told apart by shape:

* ``[N, 4 + C, A]``: per anchor ``cx, cy, w, h`` in network-input pixels, then C class scores
  (sigmoid applied, no objectness); NMS is ours.
* ``[N, K, 6]`` (NMS-free exports, YOLOv10/YOLO26 or ``nms=True``): ``x1, y1, x2, y2, score,
  class`` already suppressed; rows below the score threshold are padding.

Default input as Ultralytics exports it: RGB, 0..1, letterbox centred with pad 114.
"""

from __future__ import annotations

import ast

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.base import Candidates, OnnxDetector, best_class
from models.registry import InputSpec


def ultralytics_input(width: int = 640, height: int = 640) -> InputSpec:
    return InputSpec(width=width, height=height, colour="rgb", mean=(0, 0, 0), std=(255, 255, 255),
                     resize="letterbox", pad_value=114, anchor="center")


def is_end_to_end(rows: int, cols: int, num_classes: int | None) -> bool:
    """Tell ``[K, 6]`` (NMS-free) from ``[4 + C, A]`` for one image's output.

    Only a raw head with exactly 6 anchors looks like the NMS-free layout; the class count (from
    the caller or the file's metadata, else COCO's 80) settles it.
    """
    return cols == 6 and rows != 4 + (num_classes if num_classes is not None else 80)


def class_count_from_metadata(session: ort.InferenceSession) -> int | None:
    """Ultralytics writes ``names: {0: 'person', ...}`` into the ONNX metadata; count them."""
    names = session.get_modelmeta().custom_metadata_map.get("names")
    if not names:
        return None
    try:
        parsed = ast.literal_eval(names)
    except (ValueError, SyntaxError):
        return None
    return len(parsed) if isinstance(parsed, dict | list) else None


class UltralyticsDetector(OnnxDetector):
    def __init__(self, name: str, session: ort.InferenceSession, spec: InputSpec, *,
                 num_classes: int | None = None, **kw: object) -> None:
        super().__init__(name, session, spec, **kw)  # type: ignore[arg-type]
        self.num_classes = num_classes or class_count_from_metadata(session)

    def decode(self, outputs: list[npt.NDArray[np.float32]]) -> Candidates:
        pred = outputs[0]
        if pred.ndim != 2:
            raise self._shape_error("Ultralytics output", "[N, 4 + classes, anchors] or [N, K, 6]",
                                    (-1, *pred.shape))
        if is_end_to_end(pred.shape[0], pred.shape[1], self.num_classes):
            return self._decode_end_to_end(pred)
        if pred.shape[0] < 5 or (self.num_classes is not None and pred.shape[0] != 4 + self.num_classes):
            expected = f"[N, {4 + self.num_classes}, anchors]" if self.num_classes else "[N, 4 + classes, anchors]"
            raise self._shape_error("Ultralytics output", f"{expected} or [N, K, 6]", (-1, *pred.shape))
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
