"""The ``Detector`` protocol and what every ONNX adapter shares.

A detector takes a batch of BGR uint8 images of any sizes and returns one
:class:`core.types.Detections` per image, boxes in that image's own pixel coordinates.
Adapters only say how to turn raw network outputs into candidate boxes in network-input pixels
(:meth:`OnnxDetector.decode`); resizing, normalisation, un-mapping, clipping, score threshold and
NMS live here once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from core.errors import ModelError
from core.types import Detections
from models.registry import InputSpec

log = logging.getLogger(__name__)

DEFAULT_THREADS = 1
"""One intra-op thread per session: a worker serving many cameras gets more frames through per core
that way (measured in benchmarks/: 25.7 vs 45.7 CPU-ms per frame with 2 threads on a busy machine).
``PATROL_ORT_THREADS`` or ``threads=`` raises it for one-off, latency-bound use."""

Candidates = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]
"""(xyxy (N,4) in network-input pixels, score (N,), class_id (N,)) before NMS."""


@runtime_checkable
class Detector(Protocol):
    """What the pipeline needs from a detector."""

    name: str
    input_size: tuple[int, int]
    """(width, height) of the network input."""

    def warmup(self) -> None:
        """Run once on a blank image so the first real frame is not slow."""

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        """One :class:`Detections` per image, boxes in that image's pixel coordinates."""
        ...


# --- sessions ----------------------------------------------------------------------------------

def pick_providers(requested: Sequence[str] | None = None) -> list[str]:
    """Requested execution providers that this onnxruntime build has, CPU always last.

    ``None`` means the host's choice, ``PATROL_ORT_PROVIDERS`` (comma-separated, e.g.
    ``CUDAExecutionProvider``), else CPU only: the provider is a property of the machine, not of a
    camera, so one site config runs on CPU and GPU hosts alike. Asking for CUDA or TensorRT on a
    machine without them is not an error: they are skipped with a log line and CPU is used.
    """
    if requested is None:
        requested = [p.strip() for p in os.environ.get("PATROL_ORT_PROVIDERS", "").split(",") if p.strip()]
    available = set(ort.get_available_providers())
    chosen = []
    for name in requested:
        if name in available and name not in chosen:
            chosen.append(name)
        elif name not in available:
            log.info("execution provider %s not available here; skipped", name)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def prepared_model(path: Path | str, free_size: bool = False) -> bytes | None:
    """The model rewritten in memory for a faster session (the file itself is never touched), or
    ``None`` when there is nothing to gain or the ``onnx`` package cannot do it:

    * weights that old exporters also list as graph inputs are dropped from the inputs, so ONNX
      Runtime may fold them as constants (PicoDet: 36 instead of 58 CPU-ms a frame);
    * ``free_size``: the input's height and width and every output dimension but the batch become
      symbolic, so a fully convolutional network runs on a canvas cut to the picture
      (:attr:`models.registry.InputSpec.fit`).
    """
    try:
        import onnx
    except ImportError:
        log.info("onnx not installed: %s runs as exported", Path(path).name)
        return None
    try:
        model = onnx.load(str(path))
        graph = model.graph
        weights = {w.name for w in graph.initializer}
        inputs = [i for i in graph.input if i.name not in weights]
        changed = len(inputs) != len(graph.input)
        if changed:
            del graph.input[:]
            graph.input.extend(inputs)
        if free_size:
            dims = graph.input[0].type.tensor_type.shape.dim
            if len(dims) != 4:
                raise ValueError(f"input has {len(dims)} dimensions, not 4")
            dims[2].dim_param, dims[3].dim_param = "height", "width"
            for out in graph.output:
                for k, dim in enumerate(out.type.tensor_type.shape.dim):
                    if k:
                        dim.dim_param = f"{out.name}_{k}"
            changed = True
        return model.SerializeToString() if changed else None
    except Exception as exc:  # a file onnx cannot parse still gets its chance with onnxruntime
        log.warning("%s: cannot rewrite the model (%s); it runs as exported", Path(path).name, exc)
        return None


def create_session(path: Path | str, threads: int | None = None,
                   providers: Sequence[str] | None = None, free_size: bool = False) -> ort.InferenceSession:
    """An inference session with bounded threads; load failures become :class:`ModelError`.

    ``free_size`` lets the network's input height and width vary (see :func:`prepared_model`)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or int(os.environ.get("PATROL_ORT_THREADS", DEFAULT_THREADS))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait between frames
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # old exporters leave initializers in graph inputs (see prepared_model)
    try:
        model = prepared_model(path, free_size) if Path(path).is_file() else None
        if model is not None:
            try:
                return ort.InferenceSession(model, sess_options=opts, providers=pick_providers(providers))
            except Exception as exc:
                log.warning("%s: the rewritten model does not load (%s); it runs as exported", path, exc)
        return ort.InferenceSession(str(path), sess_options=opts, providers=pick_providers(providers))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: cannot load ONNX model: {exc}") from exc


# --- pre-processing ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Placement:
    """Where an image sits in the network input: ``net = orig * scale + pad`` per axis."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int
    height: int
    canvas: tuple[int, int] = (0, 0)
    """(width, height) of the network input this image was placed in."""

    def to_image(self, xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map boxes from network-input pixels back to the image, clipped to its borders."""
        out = np.empty_like(xyxy, dtype=np.float32)
        out[:, 0::2] = (xyxy[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (xyxy[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.height, out=out[:, 1::2])
        return out


def check_image(image: object, index: int) -> npt.NDArray[np.uint8]:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 \
            or image.dtype != np.uint8 or image.shape[0] == 0 or image.shape[1] == 0:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ModelError(f"image #{index}: expected a BGR uint8 array of shape (H, W, 3), "
                         f"got shape {shape} dtype {dtype}")
    return image


def place(image: npt.NDArray[np.uint8], spec: InputSpec, fit: int = 0) -> tuple[npt.NDArray[np.uint8], Placement]:
    """Resize (letterbox or stretch) one BGR image into a ``spec.height x spec.width`` canvas.

    ``fit`` > 0 (letterbox only): the canvas is cut down to the picture, rounded up to a multiple of
    ``fit`` on each axis; the picture keeps the scale it has on the full canvas."""
    h, w = image.shape[:2]
    if spec.resize == "stretch":
        sx, sy = spec.width / w, spec.height / h
        resized = np.asarray(cv2.resize(image, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR),
                             dtype=np.uint8)
        return resized, Placement(sx, sy, 0.0, 0.0, w, h, (spec.width, spec.height))
    s = min(spec.width / w, spec.height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    cw, ch = spec.width, spec.height
    if fit:
        cw, ch = min(cw, -(-nw // fit) * fit), min(ch, -(-nh // fit) * fit)
    canvas = np.full((ch, cw, 3), spec.pad_value, dtype=np.uint8)
    if spec.anchor == "center":
        px, py = (cw - nw) // 2, (ch - nh) // 2
    else:
        px, py = 0, 0
    canvas[py:py + nh, px:px + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    # exact per-axis scale of the resized content, so un-mapping is exact
    return canvas, Placement(nw / w, nh / h, float(px), float(py), w, h, (cw, ch))


def to_tensor(canvases: Sequence[npt.NDArray[np.uint8]], spec: InputSpec) -> npt.NDArray[np.float32]:
    """Stack BGR canvases into an NCHW float32 batch in the spec's colour order and normalisation."""
    batch = np.stack(canvases).astype(np.float32)
    if spec.colour == "rgb":
        batch = batch[..., ::-1]
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    if mean.any():
        batch -= mean
    if (std != 1).any():
        batch /= std
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


# --- post-processing ----------------------------------------------------------------------------

def nms(xyxy: npt.NDArray[np.float32], score: npt.NDArray[np.float32], class_id: npt.NDArray[np.int32],
        iou_threshold: float, class_agnostic: bool = False, max_det: int = 300) -> npt.NDArray[np.intp]:
    """Indices kept by non-maximum suppression, best score first (per class unless agnostic)."""
    if len(score) == 0:
        return np.zeros(0, np.intp)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1).astype(np.float64)
    boxes = xywh.tolist()
    scores = score.astype(np.float64).tolist()
    if class_agnostic:
        kept = cv2.dnn.NMSBoxes(boxes, scores, 0.0, iou_threshold)
    else:
        kept = cv2.dnn.NMSBoxesBatched(boxes, scores, class_id.astype(np.int32).tolist(), 0.0, iou_threshold)
    keep = np.asarray(kept, dtype=np.intp).reshape(-1)
    keep = keep[np.argsort(-score[keep], kind="stable")]
    return keep[:max_det]


def input_batch_size(session: ort.InferenceSession) -> int | None:
    """The fixed batch size of the first input, or ``None`` when it is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxDetector:
    """Common ONNX Runtime detector: subclasses implement :meth:`decode` for their output format."""

    def __init__(self, name: str, session: ort.InferenceSession, spec: InputSpec, *,
                 score_threshold: float = 0.3, iou_threshold: float = 0.45,
                 class_agnostic: bool = False, max_det: int = 300) -> None:
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < iou_threshold <= 1.0:
            raise ModelError(f"model {name!r}: score_threshold must be in [0, 1] and iou_threshold "
                             f"in (0, 1], got {score_threshold} and {iou_threshold}")
        self.name = name
        self.session = session
        self.spec = spec
        self.input_size = (spec.width, spec.height)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.class_agnostic = class_agnostic
        self.max_det = max_det
        self._input_name = session.get_inputs()[0].name
        self._batch = input_batch_size(session)
        self._check_input_shape()
        shape = session.get_inputs()[0].shape
        free = len(shape) == 4 and not isinstance(shape[2], int) and not isinstance(shape[3], int)
        self.fit = spec.fit if spec.resize == "letterbox" and free else 0
        """Canvas multiple in use (0: every image runs on the full input size)."""

    def _check_input_shape(self) -> None:
        shape = self.session.get_inputs()[0].shape
        want = [3, self.spec.height, self.spec.width]
        have = list(shape[1:])
        if len(shape) != 4 or any(isinstance(h, int) and h != w for h, w in zip(have, want, strict=True)):
            raise ModelError(f"model {self.name!r}: input {self._input_name!r} has shape {shape}, "
                             f"expected [N, {want[0]}, {want[1]}, {want[2]}] from the registry spec")

    def warmup(self) -> None:
        self.detect([np.zeros((self.spec.height, self.spec.width, 3), np.uint8)])
        if self.fit:  # and the canvas of the common 16:9 camera
            self.detect([np.zeros((self.spec.width * 9 // 16, self.spec.width, 3), np.uint8)])

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        if len(images) == 0:
            return []
        placed = [place(check_image(img, i), self.spec, self.fit) for i, img in enumerate(images)]
        groups: dict[tuple[int, int], list[int]] = {}  # one tensor per canvas size
        for i, (_, p) in enumerate(placed):
            groups.setdefault(p.canvas, []).append(i)
        raw: list[list[npt.NDArray[np.float32]]] = [[] for _ in placed]
        for members in groups.values():
            outs = self._run(to_tensor([placed[i][0] for i in members], self.spec))
            for i, out in zip(members, outs, strict=True):
                raw[i] = out
        return [self._finish(r, p) for r, (_, p) in zip(raw, placed, strict=True)]

    def _run(self, tensor: npt.NDArray[np.float32]) -> list[list[npt.NDArray[np.float32]]]:
        """Raw outputs per image: one call for a dynamic batch, a loop for a fixed batch of 1."""
        try:
            if self._batch is None:
                outs = self.session.run(None, {self._input_name: tensor})
                return [[self._take(o, i, len(tensor)) for o in outs] for i in range(len(tensor))]
            results = []
            for i in range(0, len(tensor), self._batch):
                chunk = tensor[i:i + self._batch]
                if len(chunk) < self._batch:  # pad a short last chunk of a fixed-batch model
                    chunk = np.concatenate([chunk, np.zeros((self._batch - len(chunk), *chunk.shape[1:]),
                                                            np.float32)])
                outs = self.session.run(None, {self._input_name: chunk})
                for j in range(min(self._batch, len(tensor) - i)):
                    results.append([self._take(o, j, self._batch) for o in outs])
            return results
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"model {self.name!r}: inference failed: {exc}") from exc

    @staticmethod
    def _take(output: npt.NDArray[np.float32], index: int, batch: int) -> npt.NDArray[np.float32]:
        """Slice one image's output; exporters that drop the batch axis (batch 1) pass through."""
        if batch == 1 and (output.ndim < 3 or output.shape[0] != 1):
            return np.asarray(output)
        return np.asarray(output[index])

    def _finish(self, raw: list[npt.NDArray[np.float32]], placement: Placement) -> Detections:
        xyxy, score, class_id = self.decode_on(raw, placement.canvas)
        if len(score):
            keep = score >= self.score_threshold
            xyxy, score, class_id = xyxy[keep], score[keep], class_id[keep]
        if len(score) == 0:
            return Detections.empty()
        xyxy = placement.to_image(xyxy.astype(np.float32))
        wide = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        xyxy, score, class_id = xyxy[wide], score[wide], class_id[wide]
        order = nms(xyxy, score, class_id, self.iou_threshold, self.class_agnostic, self.max_det)
        return Detections(xyxy[order], score[order].astype(np.float32), class_id[order].astype(np.int32))

    def decode(self, outputs: list[npt.NDArray[np.float32]]) -> Candidates:
        """Candidate boxes of one image in network-input pixels (score threshold may be applied)."""
        raise NotImplementedError

    def decode_on(self, outputs: list[npt.NDArray[np.float32]], canvas: tuple[int, int]) -> Candidates:
        """:meth:`decode` for an image run on a ``canvas`` (width, height); adapters whose output
        layout depends on the input size (:attr:`fit`) override this."""
        return self.decode(outputs)

    def _shape_error(self, what: str, expected: str, actual: object) -> ModelError:
        return ModelError(f"model {self.name!r}: {what}: expected shape {expected}, got {actual}")


def best_class(scores: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """Per row, the best class score and its index."""
    cls = scores.argmax(axis=1).astype(np.int32)
    return scores[np.arange(len(scores)), cls].astype(np.float32), cls
