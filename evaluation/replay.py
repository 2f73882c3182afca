"""Replay a labelled clip: frames -> detections (detector or cache) -> analyzer -> incident events.

The detector runs once per clip; its output is kept in a detection cache
(:mod:`evaluation.cache`) keyed by the clip's sha256, the model and the detector settings, so
evaluation and tuning re-run only tracking and rules. Rules that read pixels (the dual background
model of keep_clear and no_vending zones) get the clip's own decoded frames, checked against the
cached frame times; cameras without such zones replay on detections alone.

:class:`Replayer` makes a parameter sweep cheap without changing what is computed:

* a clip's frames and detections are loaded once;
* tracking does not depend on zone parameters, so each clip is tracked once and the recorded
  tracks are played back (:class:`RecordedTracker`);
* each dual background model is recorded per clip and model parameters and played back while its
  inputs (frame times, ignore boxes) are the same as when it was recorded; on the first
  difference it turns into a live model fed with everything so far (:class:`MemoBackground`);
* zones do not interact (a rule per zone, incidents per zone), so each zone is replayed on its own
  and its incidents are kept per zone config: a sweep over parking parameters replays a keep_clear
  zone once. ``tests/evaluation`` checks that zone-by-zone replay equals the whole-camera replay.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
import numpy.typing as npt

from camera_config.schema import Camera
from core.errors import PatrolError, SourceError
from core.events import IncidentEvent
from core.progress import progress
from core.types import Detections, Frame
from evaluation.cache import CachedClip, CacheKey, CacheMismatch, CacheMissing, load_cache, save_cache
from evaluation.labels import ClipLabels, clip_frame_size, sha256_file
from pipeline.sampler import TimeSampler

log = logging.getLogger(__name__)

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
    """The model a camera's detections come from: name, file sha256, network input size, and the
    canvas multiple it runs at (:attr:`models.registry.InputSpec.fit`; 0: the full input)."""

    name: str
    sha256: str
    input_size: tuple[int, int]
    fit: int = 0


def model_identity(camera: Camera) -> ModelIdentity:
    """Look the camera's model up in the model registry."""
    from models.registry import registry

    specs = registry()
    spec = specs.get(camera.detector.model)
    if spec is None:
        raise PatrolError(f"camera {camera.id!r}: detector.model {camera.detector.model!r} is not in "
                          f"models/registry.yaml (known: {', '.join(sorted(specs))})")
    return ModelIdentity(spec.name, spec.sha256, (spec.input.width, spec.input.height), spec.input.fit)


def needs_pictures(camera: Camera) -> bool:
    """Rules that read pixels (the dual background: obstruction, stall occupancy) need pictures:
    each zone's kind says so (:attr:`rules.registry.RuleKind.reads_pixels`)."""
    from rules.registry import kinds_of  # imported where used, like the analyzer (it loads every rule)

    return any(kind.reads_pixels for kind in kinds_of(camera.zones, f"camera {camera.id!r}"))


def cache_key(clip_sha256: str, camera: Camera, model: ModelIdentity,
              tiles: Sequence[tuple[int, int, int, int]] = ()) -> CacheKey:
    """Everything the cached detections depend on (not the zones: those are what tuning changes),
    and the region tiles the detector also ran on (models/regions.py), when it did."""
    settings: dict[str, Any] = {
        "default_score": camera.detector.default_score,
        "class_scores": dict(sorted(camera.detector.class_scores.items())),
        "ignore_score": camera.detector.ignore_score,
        "analysis_fps": camera.analysis_fps,
        "input_size": list(model.input_size),
    }
    if model.fit:  # absent when 0, so caches made before the field existed still match
        settings["fit"] = model.fit
    if tiles:  # zone-focused detection (models/regions.py); absent when the whole frame is enough
        settings["region_tiles"] = [list(t) for t in tiles]
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


def blank_picture(size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """An all-black frame that costs no memory, for cameras whose rules read no pixels."""
    w, h = size
    return np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (h, w, 3))


# --- detection and cache ---------------------------------------------------------------------------

def detect_clip(labels: ClipLabels, detector: DetectorLike, key: CacheKey) -> CachedClip:
    """Decode the clip at the camera's analysis fps and run the detector on every sampled frame."""
    camera = labels.camera
    clip: CachedClip | None = None
    frames = sample_frames(labels.clip, camera.id, camera.analysis_fps, labels.wall_start)
    for frame in progress(frames, desc=f"detect {labels.name}", unit="frame"):
        if clip is None:
            clip = CachedClip(key, (frame.width, frame.height))
        clip.append(frame.pts, detector.detect([frame.image])[0])
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
    key = cache_key(clip_sha256 or sha256_file(labels.clip), labels.camera, model, region_tiles(labels, model))
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


def region_tiles(labels: ClipLabels, model: ModelIdentity) -> list[tuple[int, int, int, int]]:
    """The tiles the camera's ``detector.regions`` plans on this clip's frames (none: the whole frame)."""
    from models.regions import RegionPlanner

    size = labels.frame_size or clip_frame_size(labels.clip)
    tiles = RegionPlanner.for_camera(labels.camera, model.input_size).tiles(size)
    return [(t.x1, t.y1, t.x2, t.y2) for t in tiles]


def clip_pictures(labels: ClipLabels, clip: CachedClip) -> list[npt.NDArray[np.uint8]]:
    """Decode the frames the cache was made from; refuse when their times differ from the cache's."""
    camera = labels.camera
    pictures: list[npt.NDArray[np.uint8]] = []
    for frame in sample_frames(labels.clip, camera.id, camera.analysis_fps, labels.wall_start):
        i = len(pictures)
        if i >= len(clip.pts) or abs(clip.pts[i] - frame.pts) > 1e-3:
            want = clip.pts[i] if i < len(clip.pts) else "none"
            raise CacheMismatch(Path(str(labels.clip)), [f"frame {i}: clip has pts {frame.pts}, cache has {want}"])
        pictures.append(frame.image)
    if len(pictures) != len(clip.pts):
        raise CacheMismatch(Path(str(labels.clip)), [f"clip has {len(pictures)} sampled frames, cache {len(clip.pts)}"])
    return pictures


def replay_cached(clip: CachedClip, camera: Camera, timezone: str, analyzer_factory: AnalyzerFactory,
                  pictures: Sequence[npt.NDArray[np.uint8]] | None = None,
                  wall_start: float = 0.0) -> list[IncidentEvent]:
    """Run tracking and rules over cached detections; return every incident event in order.

    ``pictures`` are the decoded frames (:func:`clip_pictures`); without them every frame is
    black, which is exact only for cameras whose rules read no pixels (:func:`needs_pictures`).
    """
    analyzer = analyzer_factory(camera, timezone)
    blank = blank_picture(clip.frame_size)
    events: list[IncidentEvent] = []
    for i, (pts, dets) in enumerate(zip(clip.pts, clip.detections, strict=True)):
        image = pictures[i] if pictures is not None else blank
        frame = Frame(camera_id=camera.id, pts=pts, wall_time=wall_start + pts, image=image)
        events.extend(analyzer.process(frame, dets))
    return events


def default_analyzer_factory(camera: Camera, timezone: str) -> FrameAnalyzer:
    """The production analyzer (:class:`rules.analyzer.CameraAnalyzer`)."""
    from rules.analyzer import CameraAnalyzer

    return CameraAnalyzer(camera, timezone)


def default_detector_factory(camera: Camera) -> DetectorLike:
    """The production detector for a camera, run at the lowest score the camera config uses
    (the analyzer applies the per-class thresholds)."""
    from models.factory import load_detector
    from models.regions import with_regions

    choice = camera.detector
    return with_regions(load_detector(choice.model, score_threshold=choice.lowest_score), camera)  # type: ignore[return-value]


# --- sweeps: record once, play back -----------------------------------------------------------------

class RecordedTracker:
    """Plays back the tracks a real tracker produced for the same clip and detector thresholds.

    The first replay of a clip records (a real :class:`~pipeline.tracking.ObjectTracker` runs and
    each frame's tracks are snapshotted); later replays get the snapshots. Tracking depends only
    on the detections, so this is exact as long as the frame times are the same, which is checked.
    """

    def __init__(self, recording: list[tuple[float, list[Any]]], live: Any | None) -> None:
        self.recording = recording
        self.live = live
        self._i = 0

    def update(self, pts: float, detections: Detections) -> list[Any]:
        if self.live is not None:
            tracks = self.live.update(pts, detections)
            self.recording.append((pts, [copy.deepcopy(t) for t in tracks]))
            return list(tracks)
        if self._i >= len(self.recording) or self.recording[self._i][0] != pts:
            raise PatrolError(f"recorded tracks do not fit this replay at pts {pts}")
        tracks = self.recording[self._i][1]
        self._i += 1
        return list(tracks)


def _digest_boxes(boxes: Sequence[Any]) -> bytes:
    arr = np.asarray([tuple(map(float, b)) for b in boxes], np.float64)
    return hashlib.sha1(arr.tobytes()).digest()


@dataclass
class _BgStep:
    pts: float
    boxes: bytes
    regions: list[Any]
    static_mask: Any


class MemoBackground:
    """A :class:`~rules.background.DualBackground` stand-in that records or plays back.

    With an empty recording it runs the real model and records every step. With a recording it
    returns the recorded regions while each call has the recorded frame time and ignore boxes; at
    the first difference it feeds the real model every input so far and goes on live.
    """

    def __init__(self, recording: list[_BgStep], model: Any) -> None:
        self.recording = recording
        self.model = model
        self.recording_now = not recording
        self.live = self.recording_now
        self._inputs: list[tuple[Any, float, list[Any]]] = []
        self._i = 0
        self._mask: Any = None

    @property
    def static_mask(self) -> Any:
        return self.model.static_mask if self.live else self._mask

    def update(self, image_bgr: Any, pts: float, ignore_boxes: Sequence[Any] = ()) -> list[Any]:
        boxes = list(ignore_boxes)
        digest = _digest_boxes(boxes)
        if not self.live:
            step = self.recording[self._i] if self._i < len(self.recording) else None
            if step is not None and step.pts == pts and step.boxes == digest:
                self._i += 1
                self._inputs.append((image_bgr, pts, boxes))
                self._mask = step.static_mask
                return list(step.regions)
            self.live = True  # diverged: catch the real model up, then go on live
            for img, p, b in self._inputs:
                self.model.update(img, p, b)
            self._inputs.clear()
        regions = list(self.model.update(image_bgr, pts, boxes))
        if self.recording_now:
            self.recording.append(_BgStep(pts, digest, regions, self.model.static_mask))
        return regions

    def still_there(self, xyxy: Any, ignore_boxes: Sequence[Any] = ()) -> float:
        """The real model's :meth:`~rules.background.DualBackground.still_there`: it reads the model's
        state, so a playback catches the real model up on every input so far and goes on live."""
        if not self.live:
            self.live = True
            for img, p, b in self._inputs:
                self.model.update(img, p, b)
            self._inputs.clear()
        share: float = self.model.still_there(xyxy, ignore_boxes)
        return share


def background_params(model: Any) -> tuple[Any, ...]:
    names = ("long_term_s", "short_term_s", "diff_threshold", "min_area", "work_width", "max_static_s",
             "global_change_frac", "max_shift_px", "ignore_margin")
    return tuple(getattr(model, n, None) for n in names)


def _camera_digest(camera: Camera) -> str:
    data = camera.model_dump(mode="json", exclude={"url"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass
class _Loaded:
    clip: CachedClip
    pictures: list[npt.NDArray[np.uint8]] | None
    tracks: dict[str, list[tuple[float, list[Any]]]] = field(default_factory=dict)
    backgrounds: dict[tuple[Any, ...], list[_BgStep]] = field(default_factory=dict)


class Replayer:
    """Replays labelled clips from the detection cache (filled on first use); see the module doc.

    ``replayer(labels, camera) -> list[Observed]`` is the ``replay_fn`` of :func:`evaluation.tune.sweep`.
    ``detected`` lists the clips whose detections had to be computed (not from the cache).
    """

    def __init__(self, cache_dir: Path, detector_factory: DetectorFactory | None = None, *,
                 refresh: bool = False, split_zones: bool = True, memo: bool = True) -> None:
        self.cache_dir = cache_dir
        self.detector_factory = detector_factory
        self.refresh = refresh
        self.split_zones = split_zones
        self.memo = memo
        self.detected: list[str] = []
        self.replays = 0
        self._loaded: dict[str, _Loaded] = {}
        self._zone_results: dict[tuple[str, str], list[Any]] = {}

    def fresh(self) -> Replayer:
        """A replayer sharing the frames and detections loaded so far, with nothing recorded."""
        other = Replayer(self.cache_dir, self.detector_factory, split_zones=self.split_zones, memo=self.memo)
        other._loaded = {k: _Loaded(v.clip, v.pictures) for k, v in self._loaded.items()}
        return other

    def load(self, labels: ClipLabels) -> _Loaded:
        key = str(labels.path)
        if key not in self._loaded:
            clip, from_cache = cached_detections(labels, self.cache_dir, self.detector_factory,
                                                 refresh=self.refresh)
            if not from_cache:
                self.detected.append(labels.name)
            pictures = clip_pictures(labels, clip) if needs_pictures(labels.camera) else None
            log.info("%s: %d frames (%s)", labels.name, len(clip), "cache" if from_cache else "detected")
            self._loaded[key] = _Loaded(clip, pictures)
        return self._loaded[key]

    def events(self, labels: ClipLabels, camera: Camera) -> list[IncidentEvent]:
        """Every incident event of a replay of ``labels``' clip under ``camera``'s config."""
        from rules.analyzer import CameraAnalyzer

        data = self.load(labels)
        memo = self.memo
        det_key = camera.detector.model_dump_json()

        class _Analyzer(CameraAnalyzer):
            def _build(self, frame_size: tuple[int, int]) -> None:
                super()._build(frame_size)
                if not memo:
                    return
                if self.background is not None:
                    self.background = _wrap_background(data, ("analyzer", det_key), self.background)
                for rule in self.rules:
                    model = getattr(rule, "background", None)
                    if model is not None and hasattr(model, "update"):
                        ignore = tuple(getattr(getattr(rule, "zone", None), "ignore_classes", ()))
                        rule.background = _wrap_background(  # type: ignore[attr-defined]
                            data, ("rule", det_key, ignore), model)

        def factory(cam: Camera, timezone: str) -> FrameAnalyzer:
            tracker: Any = None
            if memo:
                recording = data.tracks.get(det_key)
                if recording is None:
                    from pipeline.tracking import ObjectTracker

                    recording = data.tracks[det_key] = []
                    tracker = RecordedTracker(recording, ObjectTracker())
                else:
                    tracker = RecordedTracker(recording, None)
            return _Analyzer(cam, timezone, tracker)

        self.replays += 1
        recording_tracks = memo and det_key not in data.tracks
        try:
            return replay_cached(data.clip, camera, labels.site.site.timezone, factory, data.pictures,
                                 labels.wall_start)
        except BaseException:
            if recording_tracks:  # a partial recording must not be played back
                data.tracks.pop(det_key, None)
            raise

    def __call__(self, labels: ClipLabels, camera: Camera) -> list[Any]:
        from evaluation.matching import incidents_from_events

        if not self.split_zones:
            return incidents_from_events(self.events(labels, camera))
        out = []
        for zone in camera.zones:
            single = camera.model_copy(update={"zones": (zone,)})
            key = (str(labels.path), _camera_digest(single))
            if key not in self._zone_results:
                self._zone_results[key] = incidents_from_events(self.events(labels, single))
            out.extend(self._zone_results[key])
        return sorted(out, key=lambda o: (o.opened, o.incident_id))


def _wrap_background(data: _Loaded, key: tuple[Any, ...], model: Any) -> MemoBackground:
    full = (*key, background_params(model))
    recording = data.backgrounds.setdefault(full, [])
    return MemoBackground(recording, model)
