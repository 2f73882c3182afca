"""Optional: Ultralytics ``.pt`` weights through the ``ultralytics`` package (extra ``[ultralytics]``).

Imported only when a ``.pt`` file is loaded; without the package the user gets a clear
:class:`ModelError` saying which extra to install. Exporting to ONNX and using
:class:`models.ultralytics.UltralyticsDetector` is the supported road for production.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ModelError
from core.types import Detections


class UltralyticsPtDetector:
    def __init__(self, name: str, model: Any, *, score_threshold: float, iou_threshold: float,
                 class_agnostic: bool, imgsz: int = 640) -> None:
        self.name = name
        self.input_size = (imgsz, imgsz)
        self._model = model
        self._kw = {"conf": score_threshold, "iou": iou_threshold, "agnostic_nms": class_agnostic,
                    "imgsz": imgsz, "verbose": False}

    def warmup(self) -> None:
        self.detect([np.zeros((self.input_size[1], self.input_size[0], 3), np.uint8)])

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        if not images:
            return []
        out = []
        for result in self._model.predict(list(images), **self._kw):
            boxes = result.boxes
            out.append(Detections(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(),
                                  boxes.cls.cpu().numpy().astype(np.int32)))
        return out


def load_pt_detector(path: Path, *, score_threshold: float = 0.3, iou_threshold: float = 0.45,
                     class_agnostic: bool = False) -> UltralyticsPtDetector:
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise ModelError(f"{path}: .pt weights need the optional 'ultralytics' package "
                         f"(pip install -e '.[ultralytics]'), or export the model to ONNX") from exc
    try:
        model = YOLO(str(path))
    except Exception as exc:  # ultralytics raises many kinds
        raise ModelError(f"{path}: cannot load Ultralytics weights: {exc}") from exc
    return UltralyticsPtDetector(path.stem, model, score_threshold=score_threshold,
                                 iou_threshold=iou_threshold, class_agnostic=class_agnostic)
