"""FastestDet: one ``[N, 5 + C, H, W]`` map. Per cell: objectness, ``tanh`` x/y offsets, ``sigmoid``
width/height (fractions of the image), C class probabilities (objectness and classes already
activated in the ONNX); ``score = obj ** 0.6 * cls ** 0.4``. Input BGR / 255, stretched.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from models.base import Candidates, OnnxDetector, best_class


class FastestDetDetector(OnnxDetector):
    def decode(self, outputs: list[npt.NDArray[np.float32]]) -> Candidates:
        fmap = outputs[0]
        if fmap.ndim != 3 or fmap.shape[0] < 6:
            raise self._shape_error("FastestDet output", "[N, 5 + classes, H, W]", (-1, *fmap.shape))
        _, h, w = fmap.shape
        cells = fmap.reshape(fmap.shape[0], -1).T  # (H*W, 5 + C), row-major over (y, x)
        cls_score, cls = best_class(cells[:, 5:])
        score = np.power(np.clip(cells[:, 0], 0, 1), 0.6) * np.power(np.clip(cls_score, 0, 1), 0.4)
        keep = score >= self.score_threshold
        idx = np.flatnonzero(keep)
        gy, gx = np.divmod(idx, w)
        c = cells[keep]
        cx = (gx + np.tanh(c[:, 1])) / w * self.spec.width
        cy = (gy + np.tanh(c[:, 2])) / h * self.spec.height
        bw = 1 / (1 + np.exp(-c[:, 3])) * self.spec.width / 2
        bh = 1 / (1 + np.exp(-c[:, 4])) * self.spec.height / 2
        xyxy = np.stack([cx - bw, cy - bh, cx + bw, cy + bh], axis=1).astype(np.float32)
        return xyxy, score[keep].astype(np.float32), cls[keep]
