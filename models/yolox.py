"""YOLOX raw head: ``[N, A, 5 + C]`` with A anchors over strides 8/16/32, decoded on a grid.

``xy = (p + grid) * stride``, ``wh = exp(p) * stride``, ``score = objectness * class``; the ONNX
already applies the sigmoids. Input BGR 0..255, letterbox at the top-left with pad 114.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from models.base import Candidates, OnnxDetector, best_class
from models.registry import InputSpec


def make_grid(width: int, height: int, strides: tuple[int, ...]) -> tuple[npt.NDArray[np.float32],
                                                                         npt.NDArray[np.float32]]:
    """Cell offsets (A, 2) and the stride of each anchor (A, 1), finest stride first."""
    cells, steps = [], []
    for s in strides:
        gy, gx = np.mgrid[0:height // s, 0:width // s]
        cells.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
        steps.append(np.full((gx.size, 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)


class YoloxDetector(OnnxDetector):
    def __init__(self, name: str, session: ort.InferenceSession, spec: InputSpec,
                 strides: tuple[int, ...] = (8, 16, 32), **kw: object) -> None:
        super().__init__(name, session, spec, **kw)  # type: ignore[arg-type]
        self.strides = strides
        self._grids = {(spec.width, spec.height): make_grid(spec.width, spec.height, strides)}

    def decode(self, outputs: list[npt.NDArray[np.float32]]) -> Candidates:
        return self.decode_on(outputs, (self.spec.width, self.spec.height))

    def decode_on(self, outputs: list[npt.NDArray[np.float32]], canvas: tuple[int, int]) -> Candidates:
        grids = self._grids.get(canvas)
        if grids is None:
            grids = self._grids[canvas] = make_grid(canvas[0], canvas[1], self.strides)
        all_cells, all_strides = grids
        pred = outputs[0]
        anchors = len(all_cells)
        if pred.ndim != 2 or pred.shape[0] != anchors or pred.shape[1] < 6:
            raise self._shape_error("YOLOX head output", f"({anchors}, 5 + classes)", pred.shape)
        score, cls = best_class(pred[:, 5:] * pred[:, 4:5])
        keep = score >= self.score_threshold
        p, grid, stride = pred[keep], all_cells[keep], all_strides[keep]
        xy = (p[:, :2] + grid) * stride
        half = np.exp(p[:, 2:4]) * stride / 2
        return np.concatenate([xy - half, xy + half], axis=1), score[keep], cls[keep]
