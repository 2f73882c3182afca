"""Helpers of the evaluation tests: a small synthetic clip and a scripted, counting detector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from core.types import Detections

CAR = 2


def write_clip(path: Path, seconds: float = 4.0, fps: int = 10, size: tuple[int, int] = (96, 64)) -> Path:
    """A small H.264 clip: grey background, a white block that appears at 1 s and stays."""
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((h, w, 3), 90, np.uint8)
            if i >= fps:
                img[30:50, 40:70] = 240
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class CountingDetector:
    """A scripted detector: one parked car in every frame; counts the images it was given."""

    name = "scripted"
    input_size = (416, 416)

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        self.calls += len(images)
        return [Detections(np.array([[40, 30, 70, 50]], np.float32), np.array([0.9], np.float32),
                           np.array([CAR], np.int32)) for _ in images]
