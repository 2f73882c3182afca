"""What a capacity trial and its runners share: the trial's spec, one record per analysed frame,
the state every runner writes into, and the runner protocol. Imports nothing else of the benchmark,
so the runners (:mod:`benchmarks.worker_runner`, :mod:`benchmarks.baseline`) and the trial
(:mod:`benchmarks.trial`, which picks a runner through :mod:`benchmarks.runners`) form no cycle."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class TrialSpec:
    """What one trial runs. Times in seconds."""

    runner: str
    urls: tuple[str, ...]
    analysis_fps: float = 0.5
    model: str = "yolox_nano_416"
    warmup_s: float = 6.0
    window_s: float = 20.0
    stagger_s: float = 2.0
    e2e_budget_s: float = 1.0
    max_lag_growth_s: float = 0.5
    ort_threads: int | None = None
    providers: tuple[str, ...] = ()
    max_batch: int = 64
    keyframe_only: bool | None = None
    """None: the pipeline decides from the stream (as shipped); True/False: forced."""
    stream_timeout_s: float = 30.0
    processes: int | None = None
    """Worker processes of the ``ours`` runner. None: as ``patrol run`` picks them
    (:func:`pipeline.shards.auto_processes`); a number: forced."""
    regions: Any = None
    """Every camera's ``detector.regions`` (JSON: a setting name or a list of crop boxes); None: the
    default (``auto``)."""

    @property
    def n(self) -> int:
        return len(self.urls)


@dataclass(slots=True)
class FrameRecord:
    """Timings of one analysed frame (monotonic seconds, durations in seconds)."""

    camera: int
    pts: float
    arrival: float
    decided: float
    decode_s: float = 0.0
    convert_s: float = 0.0
    wait_s: float = 0.0
    infer_s: float = 0.0
    batch: int = 1
    track_s: float = 0.0
    rules_s: float = 0.0


@dataclass(slots=True)
class RunnerState:
    """What every runner shares with the trial: records, per-camera errors and drop counts."""

    records: list[FrameRecord] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, rec: FrameRecord) -> None:
        with self.lock:
            self.records.append(rec)

    def fail(self, camera: int, message: str) -> None:
        with self.lock:
            self.errors.setdefault(camera, message)


class Runner(Protocol):
    state: RunnerState

    def start(self) -> None: ...

    def close(self) -> None: ...


def rss_mb() -> float:
    """Resident memory of this process now, MiB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
