"""GFL/DFL heads (PP-PicoDet, NanoDet): per stride a class map ``[A, C]`` (sigmoid applied in
the ONNX) and a distance distribution ``[A, 4 * (reg_max + 1)]``.

Each side's distance is the expectation of a softmax over ``reg_max + 1`` bins, times the
stride, measured from the cell centre ``(i + 0.5) * stride``. Exporters name and order the outputs
differently (one NanoDet file's names do not even match their shapes), so outputs are matched by
shape: last axis ``C`` is a class map, ``4 * (reg_max + 1)`` a box map, and the anchor count
says which stride it belongs to.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from core.errors import ModelError
from models.base import Candidates, OnnxDetector, best_class
from models.registry import InputSpec


def centers(width: int, height: int, stride: int) -> npt.NDArray[np.float32]:
    w, h = math.ceil(width / stride), math.ceil(height / stride)
    gy, gx = np.mgrid[0:h, 0:w]
    return ((np.stack([gx.ravel(), gy.ravel()], axis=1) + 0.5) * stride).astype(np.float32)


class GflDetector(OnnxDetector):
    def __init__(self, name: str, session: ort.InferenceSession, spec: InputSpec, *,
                 strides: tuple[int, ...], reg_max: int = 7, num_classes: int = 80, **kw: object) -> None:
        super().__init__(name, session, spec, **kw)  # type: ignore[arg-type]
        if not strides:
            raise ModelError(f"model {name!r}: a GFL head needs its strides in the registry")
        self.reg_max = reg_max
        self.num_classes = num_classes
        self._centers = {len(c): (s, c) for s in strides for c in [centers(spec.width, spec.height, s)]}
        self._project = np.arange(reg_max + 1, dtype=np.float32)

    def _pair_outputs(self, outputs: list[npt.NDArray[np.float32]]) -> list[tuple[int, npt.NDArray[np.float32],
                                                                                 npt.NDArray[np.float32],
                                                                                 npt.NDArray[np.float32]]]:
        bins = 4 * (self.reg_max + 1)
        cls_maps: dict[int, npt.NDArray[np.float32]] = {}
        box_maps: dict[int, npt.NDArray[np.float32]] = {}
        for out in outputs:
            arr = out.reshape(-1, out.shape[-1]) if out.ndim >= 2 else out
            if arr.ndim != 2 or arr.shape[0] not in self._centers or arr.shape[1] not in (self.num_classes, bins):
                raise self._shape_error(
                    "GFL head output", f"(A, {self.num_classes}) or (A, {bins}) with A in "
                    f"{sorted(self._centers)}", out.shape)
            (cls_maps if arr.shape[1] == self.num_classes else box_maps)[arr.shape[0]] = arr
        if sorted(cls_maps) != sorted(self._centers) or sorted(box_maps) != sorted(self._centers):
            raise ModelError(f"model {self.name!r}: expected one class and one box map per stride with "
                             f"anchor counts {sorted(self._centers)}, got class maps {sorted(cls_maps)} "
                             f"and box maps {sorted(box_maps)}")
        return [(self._centers[a][0], self._centers[a][1], cls_maps[a], box_maps[a]) for a in cls_maps]

    def decode(self, outputs: list[npt.NDArray[np.float32]]) -> Candidates:
        boxes, scores, classes = [], [], []
        for stride, ctr, cls_map, box_map in self._pair_outputs(outputs):
            score, cls = best_class(cls_map)
            keep = score >= self.score_threshold
            if not keep.any():
                continue
            logits = box_map[keep].reshape(-1, 4, self.reg_max + 1)
            logits = np.exp(logits - logits.max(axis=2, keepdims=True))
            dist = (logits / logits.sum(axis=2, keepdims=True)) @ self._project * stride
            c = ctr[keep]
            boxes.append(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1))
            scores.append(score[keep])
            classes.append(cls[keep])
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
