"""One-off costs a trial pays before it measures, as a long-running worker pays them once: the
analyzer's first use and the detector's load and first inference. Used by the trial's runners in
the trial process (:mod:`benchmarks.runners`) and in each worker process (:mod:`benchmarks.worker_runner`)."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.records import TrialSpec


def warm_analysis() -> None:
    """Pay the analyzer's one-off costs (importing supervision/trackers, first allocations)."""
    import numpy as np

    from benchmarks.analysis import CameraAnalysis
    from core.types import Detections, Frame

    analysis = CameraAnalysis("warmup")
    car = Detections(np.array([[10, 100, 60, 130]], np.float32), np.array([0.9], np.float32),
                     np.array([2], np.int32))
    for pts in (0.0, 2.0):
        analysis.step(Frame("warmup", pts, time.time(), np.zeros((234, 416, 3), np.uint8)), car)


def warm_detector(spec: TrialSpec) -> Any:
    """The trial's detector, loaded and warmed up, after the analyzer's one-off costs were paid."""
    from models.factory import load_detector

    warm_analysis()
    detector = load_detector(spec.model, threads=spec.ort_threads, providers=list(spec.providers) or None)
    detector.warmup()
    return detector
