"""``load_detector(name or path)``: a ready detector from a registry name or an ONNX/.pt file."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.assets import AssetCache
from core.errors import ModelError
from models.base import Detector, OnnxDetector, create_session
from models.fastestdet import FastestDetDetector
from models.gfl import GflDetector
from models.registry import InputSpec, ModelSpec, registry
from models.ultralytics import UltralyticsDetector, ultralytics_input
from models.yolox import YoloxDetector

log = logging.getLogger(__name__)


def load_detector(model: str | Path, *, score_threshold: float = 0.3, iou_threshold: float = 0.45,
                  class_agnostic: bool = False, threads: int | None = None,
                  providers: Sequence[str] | None = None, cache: AssetCache | None = None,
                  input_spec: InputSpec | None = None, num_classes: int | None = None) -> Detector:
    """Build a detector.

    ``model`` is a registered name (``patrol models list``; the file is fetched into the asset cache
    and checked) or the path of an Ultralytics-format ONNX export (``[N, 4 + C, A]`` or
    ``[N, K, 6]``; input spec read from the file's input shape unless ``input_spec`` is given; class
    count from ``num_classes`` or the file's Ultralytics metadata, else 80).
    """
    kw: dict[str, Any] = {"score_threshold": score_threshold, "iou_threshold": iou_threshold,
                          "class_agnostic": class_agnostic}
    specs = registry()
    if isinstance(model, str) and model in specs:
        spec = specs[model]
        path = (cache or AssetCache()).fetch(spec.asset())
        session = create_session(path, threads, providers, free_size=spec.input.fit > 0)
        log.info("loaded model %s", spec.name, extra={"model": spec.name, "family": spec.family,
                                                       "providers": ",".join(session.get_providers())})
        return _from_spec(spec, session, kw)
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"model {str(model)!r}: neither a registered name ({', '.join(sorted(specs))}) "
                         f"nor an existing file")
    if path.suffix == ".pt":
        from models.ultralytics_pt import load_pt_detector  # optional extra, imported on demand

        return load_pt_detector(path, **kw)
    if path.suffix != ".onnx":
        raise ModelError(f"{path}: expected a .onnx file (or .pt with the 'ultralytics' extra)")
    session = create_session(path, threads, providers)
    shape = session.get_inputs()[0].shape
    if input_spec is None:
        h, w = shape[2:4] if len(shape) == 4 else (None, None)
        input_spec = ultralytics_input(w if isinstance(w, int) else 640, h if isinstance(h, int) else 640)
    return UltralyticsDetector(path.stem, session, input_spec, num_classes=num_classes, **kw)


def _from_spec(spec: ModelSpec, session: Any, kw: dict[str, Any]) -> OnnxDetector:
    if spec.family == "yolox":
        return YoloxDetector(spec.name, session, spec.input, strides=spec.strides, **kw)
    if spec.family == "gfl":
        return GflDetector(spec.name, session, spec.input, strides=spec.strides, reg_max=spec.reg_max,
                           num_classes=spec.num_classes, **kw)
    if spec.family == "fastestdet":
        return FastestDetDetector(spec.name, session, spec.input, **kw)
    return UltralyticsDetector(spec.name, session, spec.input, num_classes=spec.num_classes, **kw)
