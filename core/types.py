"""Core value types shared by every stage: Frame, Detections, Track.

One validated detection type (parallel numpy arrays checked once at construction),
frames that carry their own time, and tracks with the history the rules need.
Durations are always seconds against frame timestamps, never frame counts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded picture from one camera.

    ``pts`` is the presentation time in seconds on the stream's own clock (monotonic per
    source connection); ``wall_time`` is the Unix time the frame was received. ``image`` is
    BGR uint8, HxWx3.
    """

    camera_id: str
    pts: float
    wall_time: float
    image: npt.NDArray[np.uint8]
    keyframe: bool = False

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _as_array(name: str, value: Any, dtype: type, ndim: int) -> np.ndarray:
    arr: np.ndarray = np.asarray(value, dtype=dtype)
    if arr.ndim != ndim:
        raise ValueError(f"Detections.{name}: expected {ndim}-D array, got shape {arr.shape}")
    return arr


@dataclass(frozen=True, slots=True)
class Detections:
    """N detections in pixel coordinates of the frame they came from.

    ``xyxy`` float32 (N, 4), ``score`` float32 (N,), ``class_id`` int32 (N,) with COCO-80 ids.
    """

    xyxy: FloatArray
    score: FloatArray
    class_id: IntArray

    def __post_init__(self) -> None:
        xyxy = _as_array("xyxy", self.xyxy, np.float32, 2).reshape(-1, 4) if np.size(self.xyxy) == 0 \
            else _as_array("xyxy", self.xyxy, np.float32, 2)
        score = _as_array("score", self.score, np.float32, 1)
        class_id = _as_array("class_id", self.class_id, np.int32, 1)
        if xyxy.shape[1] != 4:
            raise ValueError(f"Detections.xyxy: expected shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        if score.shape != (n,) or class_id.shape != (n,):
            raise ValueError(
                f"Detections: expected score and class_id of shape ({n},), "
                f"got {score.shape} and {class_id.shape}"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "class_id", class_id)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: Any) -> Detections:
        """Select by boolean mask, integer array or slice."""
        return Detections(self.xyxy[index].reshape(-1, 4), self.score[index].reshape(-1),
                          self.class_id[index].reshape(-1))

    def bottom_centers(self) -> FloatArray:
        """Ground contact points (x centre, y bottom), shape (N, 2)."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)


@dataclass(slots=True)
class Track:
    """A tracked object with the history the rules read.

    ``positions`` holds (pts, x1, y1, x2, y2) for the last ``history_s`` seconds.
    """

    track_id: int
    class_id: int
    first_seen: float
    last_seen: float
    xyxy: tuple[float, float, float, float]
    score: float
    positions: deque[tuple[float, float, float, float, float]] = field(default_factory=deque)

    @property
    def age(self) -> float:
        return self.last_seen - self.first_seen

    @property
    def bottom_center(self) -> tuple[float, float]:
        x1, _, x2, y2 = self.xyxy
        return ((x1 + x2) / 2, y2)

    def stationary_for(self, tolerance: float) -> float:
        """Seconds the box has stayed within ``tolerance`` x its own size of where it is now.

        Measured against box size, so a far small car and a near large bus are judged alike,
        and over the whole recorded history, so slow creeping adds up and is told from jitter.
        """
        if not self.positions:
            return 0.0
        x1, y1, x2, y2 = self.xyxy
        cx, cy = (x1 + x2) / 2, y2
        size = max(x2 - x1, y2 - y1, 1.0)
        since = self.last_seen
        for t, px1, _py1, px2, py2 in reversed(self.positions):
            if abs((px1 + px2) / 2 - cx) > tolerance * size or abs(py2 - cy) > tolerance * size:
                break
            since = t
        return self.last_seen - since
