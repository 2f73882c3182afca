"""Detection cache: round trip, refusal on another clip/model/settings, and used by replays
(a counting detector is not called on the second run, and is called again after a model change)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from eval_helpers import CountingDetector

from camera_config.schema import Camera
from core.types import Detections
from evaluation.cache import CachedClip, CacheError, CacheKey, CacheMismatch, CacheMissing, load_cache, save_cache
from evaluation.labels import ClipLabels, load_labels, sha256_file
from evaluation.replay import Replayer, cache_key, model_identity


def write_labels(tmp_path: Path, clip: Path, model: str = "yolox_nano_416") -> Path:
    doc: dict[str, Any] = {
        "version": 1, "clip": clip.name, "camera": "cam",
        "config": {"site": {"name": "t", "timezone": "UTC"}, "cameras": [{
            "id": "cam", "url": "file", "grid_cell": "G", "analysis_fps": 2.0,
            "detector": {"model": model, "default_score": 0.3},
            "zones": [{"id": "kerb", "type": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                       "limit_s": 1.0, "close_grace_s": 1.0}]}]},
        "expected": [{"type": "illegal_parking", "zone": "kerb", "start": [0, 3]}],
    }
    path = tmp_path / f"labels-{model}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def key(**over: Any) -> CacheKey:
    base: dict[str, Any] = {"clip_sha256": "a" * 64, "model": "m", "model_sha256": "b" * 64,
                            "settings": {"default_score": 0.3, "analysis_fps": 2.0, "input_size": [416, 416]}}
    base.update(over)
    return CacheKey(**base)


def test_round_trip_with_extras(tmp_path: Path) -> None:
    clip = CachedClip(key(), (640, 352))
    clip.append(0.0, Detections.empty(), regions=np.zeros((0, 4), np.float32))
    clip.append(0.5, Detections(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32), np.array([0.5, 0.7], np.float32),
                                np.array([2, 7], np.int32)), regions=np.ones((1, 4), np.float32))
    path = save_cache(tmp_path / "c.npz", clip)
    back = load_cache(path, key())
    assert back.pts == [0.0, 0.5] and back.frame_size == (640, 352)
    assert len(back.detections[0]) == 0
    np.testing.assert_array_equal(back.detections[1].xyxy, clip.detections[1].xyxy)
    np.testing.assert_array_equal(back.detections[1].class_id, [2, 7])
    assert [r.shape for r in back.extras["regions"]] == [(0, 4), (1, 4)]


@pytest.mark.parametrize(("change", "field"), [
    ({"clip_sha256": "c" * 64}, "clip_sha256"),
    ({"model": "other"}, "model"),
    ({"model_sha256": "d" * 64}, "model_sha256"),
    ({"settings": {"default_score": 0.4, "analysis_fps": 2.0, "input_size": [416, 416]}}, "settings.default_score"),
    ({"settings": {"default_score": 0.3, "analysis_fps": 5.0, "input_size": [416, 416]}}, "settings.analysis_fps"),
    ({"settings": {"default_score": 0.3, "analysis_fps": 2.0, "input_size": [320, 320]}}, "settings.input_size"),
])
def test_refused_when_key_differs(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    clip = CachedClip(key(), (64, 48))
    clip.append(0.0, Detections.empty())
    path = save_cache(tmp_path / "c.npz", clip)
    with pytest.raises(CacheMismatch) as err:
        load_cache(path, key(**change))
    assert field in str(err.value) and str(path) in str(err.value)


def test_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CacheMissing):
        load_cache(tmp_path / "none.npz", key())
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CacheError, match="unreadable"):
        load_cache(bad, key())


def test_frames_must_advance() -> None:
    clip = CachedClip(key(), (64, 48))
    clip.append(1.0, Detections.empty())
    with pytest.raises(CacheError, match="increase"):
        clip.append(1.0, Detections.empty())


def test_replay_uses_cache_and_refuses_model_change(tmp_path: Path, block_clip: Path) -> None:
    clip = block_clip
    (tmp_path / clip.name).write_bytes(clip.read_bytes())
    labels = load_labels(write_labels(tmp_path, tmp_path / clip.name))
    cache_dir = tmp_path / "cache"
    counting = CountingDetector()

    def factory(camera: Camera) -> CountingDetector:
        return counting

    first = Replayer(cache_dir, factory)
    incidents = first(labels, labels.camera)
    frames = counting.calls
    assert frames == 8  # 4 s at 2 fps
    assert [(o.type, o.zone) for o in incidents] == [("illegal_parking", "kerb")]
    assert first.detected == [labels.name]

    second = Replayer(cache_dir, factory)
    assert second(labels, labels.camera) == incidents
    assert counting.calls == frames, "the detector ran although the cache matched"
    assert second.detected == []

    # a model change: the cache is refused, so the detector runs again (and the cache is replaced)
    other = load_labels(write_labels(tmp_path, tmp_path / clip.name, model="picodet_s_416_coco"))
    assert load_cache(cache_dir / "block.cam.npz", _key(labels)).key.model == "yolox_nano_416"
    with pytest.raises(CacheMismatch, match="model: cache has 'yolox_nano_416', wanted 'picodet_s_416_coco'"):
        load_cache(cache_dir / "block.cam.npz", _key(other))
    third = Replayer(cache_dir, factory)
    third(other, other.camera)
    assert counting.calls == 2 * frames
    assert third.detected == [other.name]

    # cache only (no detector), as tune may run: a refused cache is an error, not a silent re-run
    with pytest.raises(CacheMismatch):
        Replayer(cache_dir, None).load(labels)


def _key(labels: ClipLabels) -> CacheKey:
    return cache_key(sha256_file(labels.clip), labels.camera, model_identity(labels.camera))
