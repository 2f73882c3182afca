"""Frames of a real clip sampled by frame index, for the footage tests of the rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from core.types import Frame


def sampled_frames(path: Path, fps: float, camera_id: str, wall_base: float) -> Iterator[tuple[int, Frame]]:
    """(frame index, frame) of the clip at about ``fps``: every ``round(clip fps / fps)``-th decoded frame,
    pts = index / clip fps (the clip's own clock), wall time ``wall_base`` + pts."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    clip_fps = cap.get(cv2.CAP_PROP_FPS)
    step = max(1, round(clip_fps / fps))
    index = 0
    try:
        while cap.grab():
            if index % step == 0:
                ok, image = cap.retrieve()
                assert ok, f"{path}: cannot decode frame {index}"
                pts = index / clip_fps
                yield index, Frame(camera_id, pts, wall_base + pts, np.asarray(image, np.uint8))
            index += 1
    finally:
        cap.release()
