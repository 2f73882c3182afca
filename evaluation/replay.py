"""Replay a labelled clip: frames -> detections (detector or cache) -> analyzer -> incident events.

The detector runs once per clip; its output is kept in a detection cache
(:mod:`evaluation.cache`) keyed by the clip's sha256, the model and the detector settings, so
evaluation and tuning re-run only tracking and rules. For cameras with keep_clear zones the
cache also keeps a small grey picture of each analysed frame (the dual background model works on
a 320-pixel-wide grey image anyway), so the background model and its parameters can be replayed
and tuned without decoding or detecting again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import cv2
import numpy as np
import numpy.typing as npt

from alerts.events import IncidentEvent
from camera_config.schema import Camera, KeepClearZone, NoVendingZone
from evaluation.cache import CachedClip, CacheKey, CacheMismatch, CacheMissing, load_cache, save_cache
from evaluation.labels import ClipLabels, sha256_file
from patrol.errors import PatrolError, SourceError
from pipeline.sampler import TimeSampler
from pipeline.types import Detections, Frame

log = logging.getLogger(__name__)

THUMB_WIDTH = 320
"""Width of the grey thumbnails cached for background-model replay (the model's own work width)."""


class DetectorLike(Protocol):
    name: str
    input_size: tuple[int, int]

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]: ...


class FrameAnalyzer(Protocol):
    """What replay needs from the per-camera analyzer: one call per analysed frame."""

    def process(self, frame: Frame, detections: Detections) -> Sequence[IncidentEvent]: ...


AnalyzerFactory = Callable[[Camera, str], FrameAnalyzer]
"""(camera, site time zone) -> a fresh analyzer for one replay."""

DetectorFactory = Callable[[Camera], DetectorLike]


@dataclass(frozen=True)
class ModelIdentity:
    """The model a camera's detections come from: name, file sha256, network input size."""

    name: str
    sha256: str
    input_size: tuple[int, int]


def model_identity(camera: Camera) -> ModelIdentity:
    """Look the camera's model up in the model registry."""
    from models.registry import registry

    specs = registry()
    spec = specs.get(camera.detector.model)
    if spec is None:
        raise PatrolError(f"camera {camera.id!r}: detector.model {camera.detector.model!r} is not in "
                          f"models/registry.yaml (known: {', '.join(sorted(specs))})")
    return ModelIdentity(spec.name, spec.sha256, (spec.input.width, spec.input.height))


def needs_thumbnails(camera: Camera) -> bool:
    """Rules that read pixels (the dual background: obstruction, stall occupancy) need pictures."""
    return any(isinstance(z, KeepClearZone | NoVendingZone) for z in camera.zones)


def cache_key(clip_sha256: str, camera: Camera, model: ModelIdentity) -> CacheKey:
    """Everything the cached detections depend on (not the zones: those are what tuning changes)."""
    settings: dict[str, Any] = {
        "default_score": camera.detector.default_score,
        "class_scores": dict(sorted(camera.detector.class_scores.items())),
        "analysis_fps": camera.analysis_fps,
        "input_size": list(model.input_size),
        "thumb_width": THUMB_WIDTH if needs_thumbnails(camera) else 0,
    }
    return CacheKey(clip_sha256, model.name, model.sha256, settings)


def cache_path(cache_dir: Path, labels: ClipLabels) -> Path:
    return cache_dir / f"{labels.clip.stem}.{labels.camera.id}.npz"


# --- frames ----------------------------------------------------------------------------------------

def sample_frames(path: Path, camera_id: str, fps: float, wall_start: float = 0.0) -> Iterator[Frame]:
    """Decode ``path`` and yield the frames due at ``fps`` (the live pipeline's time sampler).

    ``pts`` is stream seconds from the first frame; ``wall_time`` is ``wall_start + pts`` (a
    recorded clip has no wall clock of its own; labels may say when it was recorded).
    """
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise SourceError(camera_id, f"cannot open clip {path}: {exc}") from exc
    sampler = TimeSampler(1.0 / fps)
    t0: float | None = None
    with container:
        stream = container.streams.video[0]
        base = stream.time_base or Fraction(1, 1000)
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * base)
                t0 = t if t0 is None else t0
                pts = round(t - t0, 6)
                if not sampler.due(pts):
                    continue
                image = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
                yield Frame(camera_id=camera_id, pts=pts, wall_time=wall_start + pts, image=image,
                            keyframe=bool(frame.key_frame))
        except av.FFmpegError as exc:
            raise SourceError(camera_id, f"cannot decode clip {path}: {exc}") from exc


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    h, w = image.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(2, round(h * tw / w))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.resize(grey, (tw, th), interpolation=cv2.INTER_AREA), np.uint8)


def picture_for(thumb: npt.NDArray[np.uint8] | None, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A frame image for replay: the thumbnail scaled back up, or a free all-black view."""
    w, h = size
    if thumb is None:
        return np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (h, w, 3))
    big = cv2.resize(thumb, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR), np.uint8)


# --- detection and cache ---------------------------------------------------------------------------

def detect_clip(labels: ClipLabels, detector: DetectorLike, key: CacheKey) -> CachedClip:
    """Decode the clip at the camera's analysis fps and run the detector on every sampled frame."""
    camera = labels.camera
    thumbs = needs_thumbnails(camera)
    clip: CachedClip | None = None
    for frame in sample_frames(labels.clip, camera.id, camera.analysis_fps, labels.wall_start):
        if clip is None:
            clip = CachedClip(key, (frame.width, frame.height))
        dets = detector.detect([frame.image])[0]
        extras = {"thumb": thumbnail(frame.image)[None]} if thumbs else {}
        clip.append(frame.pts, dets, **extras)
    if clip is None:
        raise SourceError(camera.id, f"clip {labels.clip} has no decodable video frames")
    return clip


def cached_detections(labels: ClipLabels, cache_dir: Path, detector_factory: DetectorFactory | None,
                      *, model: ModelIdentity | None = None, clip_sha256: str | None = None,
                      refresh: bool = False) -> tuple[CachedClip, bool]:
    """The clip's detections from the cache, or by running the detector (then cached).

    Returns ``(clip, from_cache)``. A cache made for another clip, model or settings is refused
    and replaced; with ``detector_factory=None`` (cache only) a missing or refused cache is an error.
    """
    model = model or model_identity(labels.camera)
    key = cache_key(clip_sha256 or sha256_file(labels.clip), labels.camera, model)
    path = cache_path(cache_dir, labels)
    if not refresh:
        try:
            return load_cache(path, key), True
        except CacheMissing:
            if detector_factory is None:
                raise
        except CacheMismatch as exc:
            if detector_factory is None:
                raise
            log.info("%s; running the detector again", exc)
    if detector_factory is None:
        raise CacheMissing(f"no usable detection cache at {path} and no detector to make one")
    clip = detect_clip(labels, detector_factory(labels.camera), key)
    save_cache(path, clip)
    return clip, False


def replay_cached(clip: CachedClip, camera: Camera, timezone: str, analyzer_factory: AnalyzerFactory,
                  wall_start: float = 0.0) -> list[IncidentEvent]:
    """Run tracking and rules over cached detections; return every incident event in order."""
    analyzer = analyzer_factory(camera, timezone)
    thumbs = clip.extras.get("thumb")
    blank = picture_for(None, clip.frame_size)
    events: list[IncidentEvent] = []
    for i, (pts, dets) in enumerate(zip(clip.pts, clip.detections, strict=True)):
        image = picture_for(thumbs[i][0], clip.frame_size) if thumbs is not None else blank
        frame = Frame(camera_id=camera.id, pts=pts, wall_time=wall_start + pts, image=image)
        events.extend(analyzer.process(frame, dets))
    return events


def default_analyzer_factory(camera: Camera, timezone: str) -> FrameAnalyzer:
    """The production analyzer (:class:`alerts.analyzer.CameraAnalyzer`)."""
    from alerts.analyzer import CameraAnalyzer

    return CameraAnalyzer(camera, timezone)


def default_detector_factory(camera: Camera) -> DetectorLike:
    """The production detector for a camera, run at the lowest score the camera config uses
    (the analyzer applies the per-class thresholds)."""
    from models.factory import load_detector

    choice = camera.detector
    lowest = min([choice.default_score, *choice.class_scores.values()])
    return load_detector(choice.model, score_threshold=lowest)
