"""First-class fakes for exact rule tests: a scripted scene, a scripted detector and a fake clock.

A :class:`ScriptedObject` says where an object is at any stream time (start, end, velocity,
windows where the detector misses it, deterministic jitter, a score schedule). A
:class:`Scene` turns a list of them into :class:`~core.types.Detections` for a time;
:class:`ScriptedDetector` serves those in call order, as a real detector would; :class:`FakeClock`
makes frames whose ``pts`` and ``wall_time`` advance at a fixed rate from a fixed base;
:class:`ListSink` is an event sink that keeps what it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from core.coco import CLASS_ID
from core.events import IncidentEvent
from core.types import Detections, Frame

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ScriptedObject:
    """One object of a scripted scene.

    ``hidden`` are [from, to) windows of stream time in which the detector misses it (occlusion,
    a missed detection); ``jitter`` is the amplitude in pixels of a deterministic wobble;
    ``dim`` are [from, to, score) windows where its score changes (lighting).
    """

    label: str
    xyxy: Box
    start: float = 0.0
    end: float = math.inf
    velocity: tuple[float, float] = (0.0, 0.0)
    score: float = 0.8
    hidden: tuple[tuple[float, float], ...] = ()
    jitter: float = 0.0
    dim: tuple[tuple[float, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.label not in CLASS_ID:
            raise ValueError(f"ScriptedObject: unknown COCO label {self.label!r}")

    def at(self, t: float) -> tuple[Box, float] | None:
        """(box, score) at stream time ``t``, or None when not detected."""
        if not self.start <= t < self.end or any(a <= t < b for a, b in self.hidden):
            return None
        dt = t - self.start
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        if self.jitter:
            dx += self.jitter * math.sin(t * 2.3 + self.xyxy[0])
            dy += self.jitter * math.cos(t * 1.7 + self.xyxy[1])
        x1, y1, x2, y2 = self.xyxy
        score = next((s for a, b, s in self.dim if a <= t < b), self.score)
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy), score


@dataclass(frozen=True)
class Scene:
    objects: Sequence[ScriptedObject] = ()
    size: tuple[int, int] = (640, 360)

    def detections(self, t: float) -> Detections:
        boxes, scores, classes = [], [], []
        w, h = self.size
        for obj in self.objects:
            got = obj.at(t)
            if got is None:
                continue
            (x1, y1, x2, y2), score = got
            x1, x2 = max(0.0, x1), min(float(w), x2)
            y1, y2 = max(0.0, y1), min(float(h), y2)
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue  # left the frame
            boxes.append((x1, y1, x2, y2))
            scores.append(score)
            classes.append(CLASS_ID[obj.label])
        if not boxes:
            return Detections.empty()
        return Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(classes, np.int32))


@dataclass
class FakeClock:
    """Frames at ``fps`` from stream time 0, wall time ``start`` + pts (Unix seconds)."""

    start: float
    fps: float = 2.0
    camera_id: str = "cam-test"
    size: tuple[int, int] = (640, 360)
    _image: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"FakeClock: fps must be positive, got {self.fps}")
        w, h = self.size
        self._image = np.zeros((h, w, 3), np.uint8)

    @classmethod
    def at(cls, iso: str, fps: float = 2.0, **kw: object) -> FakeClock:
        """A clock starting at an ISO-8601 time with offset, e.g. ``2026-03-02T09:00:00+08:00``."""
        return cls(start=datetime.fromisoformat(iso).timestamp(), fps=fps, **kw)  # type: ignore[arg-type]

    def frame(self, pts: float) -> Frame:
        return Frame(camera_id=self.camera_id, pts=pts, wall_time=self.start + pts, image=self._image)

    def frames(self, duration_s: float) -> Iterator[Frame]:
        n = math.floor(duration_s * self.fps + 1e-9)
        for i in range(n + 1):
            yield self.frame(round(i / self.fps, 6))


class ScriptedDetector:
    """A detector that answers from a script instead of pixels (the models.base Detector shape).

    ``script(i)`` gives the detections of the i-th image it is asked about, in call order;
    :meth:`from_scene` scripts it from a :class:`Scene` sampled at ``fps``.
    """

    name = "scripted"
    input_size = (640, 640)

    def __init__(self, script: Callable[[int], Detections]) -> None:
        self.script = script
        self.calls = 0

    @classmethod
    def nothing(cls) -> ScriptedDetector:
        """Sees nothing in any image: for tests about frames, sources and health, not detections."""
        return cls(lambda _i: Detections.empty())

    @classmethod
    def from_scene(cls, scene: Scene, fps: float) -> ScriptedDetector:
        return cls(lambda i: scene.detections(round(i / fps, 6)))

    def warmup(self) -> None:
        return None

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for _ in images:
            out.append(self.script(self.calls))
            self.calls += 1
        return out


class ListSink:
    """An ``EventSink`` (pipeline.worker) that keeps every published event and health report and
    counts flushes."""

    def __init__(self) -> None:
        self.events: list[IncidentEvent] = []
        self.health: list[Any] = []  # pipeline.health.HealthReport (core imports nothing above it)
        self.flushed = 0

    def publish(self, events: Sequence[IncidentEvent]) -> None:
        self.events.extend(events)

    def report_health(self, reports: Sequence[Any]) -> None:
        self.health.extend(reports)

    def flush(self) -> None:
        self.flushed += 1
