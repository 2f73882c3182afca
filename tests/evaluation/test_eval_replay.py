"""The sweep shortcuts change nothing: recorded tracks, background playback (and its switch to a live
model when the inputs differ) and zone-by-zone replay give the same incidents as a plain replay."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from eval_helpers import CountingDetector

from camera_config.schema import Camera
from evaluation.labels import ClipLabels, load_labels
from evaluation.replay import MemoBackground, Replayer, sample_frames
from evaluation.tune import apply_setting, parse_grid
from rules.background import DualBackground


def labels_for(tmp_path: Path, clip: Path) -> ClipLabels:
    (tmp_path / clip.name).write_bytes(clip.read_bytes())
    full = [[0, 0], [1, 0], [1, 1], [0, 1]]
    doc: dict[str, Any] = {
        "version": 1, "clip": clip.name, "camera": "cam",
        "config": {"site": {"name": "t", "timezone": "UTC"}, "cameras": [{
            "id": "cam", "url": "file", "grid_cell": "G", "analysis_fps": 5.0,
            "zones": [
                {"id": "kerb", "type": "no_parking", "polygon": full, "limit_s": 1.0, "close_grace_s": 1.0},
                {"id": "road", "type": "keep_clear", "polygon": full, "limit_s": 0.5, "short_term_s": 0.5,
                 "long_term_s": 20, "ignore_classes": ["person"]},
                {"id": "pav", "type": "no_vending", "polygon": full, "limit_s": 1.0, "linger_s": 1.0}]}]},
    }
    path = tmp_path / "l.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_labels(path)


def test_shortcuts_equal_plain_replay(tmp_path: Path, block_clip: Path) -> None:
    labels = labels_for(tmp_path, block_clip)
    detector = CountingDetector()

    def factory(camera: Camera) -> CountingDetector:
        return detector

    fast = Replayer(tmp_path / "cache", factory)
    plain = Replayer(tmp_path / "cache", factory, split_zones=False, memo=False)
    params = parse_grid({"no_parking:limit_s": [0.5, 2.0], "keep_clear:min_area": [0.002, 0.01],
                         "keep_clear:ignore_classes": ["person", "car"]})
    seen_types = set()
    for limit in (0.5, 2.0):
        for area in (0.002, 0.01):
            for ignore in (["person"], ["car"]):
                setting = dict(zip(params, (limit, area, ignore), strict=True))
                camera = apply_setting(labels.camera, setting)
                got, want = fast(labels, camera), plain(labels, camera)
                assert [(o.type, o.zone, o.opened, o.closed) for o in got] == \
                       [(o.type, o.zone, o.opened, o.closed) for o in want], setting
                seen_types |= {o.type for o in got}
    # the scripted car is parked all clip; the white block is new and static unless it is ignored as a car
    assert {"illegal_parking", "obstruction"} <= seen_types
    assert detector.calls == 20  # detected once, 4 s at 5 fps


def test_memo_background_goes_live_when_inputs_differ(block_clip: Path) -> None:
    frames = list(sample_frames(block_clip, "cam", 5.0))
    boxes_a: list[tuple[float, float, float, float]] = []
    boxes_b = [(40.0, 30.0, 70.0, 50.0)]

    def run(model: Any, boxes: list[tuple[float, float, float, float]]) -> list[Any]:
        return [[r.xyxy for r in model.update(f.image, f.pts, boxes if i >= 10 else [])]
                for i, f in enumerate(frames)]

    def make() -> DualBackground:
        return DualBackground(long_term_s=20, short_term_s=0.5, min_area=0.002)

    recording: list[Any] = []
    recorded = run(MemoBackground(recording, make()), boxes_a)
    assert recorded == run(make(), boxes_a) and len(recording) == len(frames)
    assert any(recorded), "the block should become a static region"
    played = MemoBackground(recording, make())
    assert run(played, boxes_a) == recorded and not played.live
    diverged = MemoBackground(recording, make())
    assert run(diverged, boxes_b) == run(make(), boxes_b)
    assert diverged.live
    np.testing.assert_array_equal(diverged.static_mask, diverged.model.static_mask)


@pytest.mark.parametrize("fps", [1.0, 2.0, 5.0])
def test_sampling_follows_stream_time(block_clip: Path, fps: float) -> None:
    pts = [f.pts for f in sample_frames(block_clip, "cam", fps)]
    assert pts[0] == 0.0 and len(pts) == round(4 * fps)
    # the live pipeline's sampler: one frame per interval on average, never a gap over 1.5 intervals
    assert all(0.5 / fps - 1e-6 <= b - a <= 1.5 / fps + 1e-6 for a, b in itertools.pairwise(pts))
