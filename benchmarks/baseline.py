"""The baseline a user would write: one thread per camera, OpenCV ``VideoCapture`` reading (and so
decoding and colour-converting) every frame at full resolution, and on each sampled frame the
same detector, tracker and rules as our pipeline, in that thread."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from benchmarks.analysis import CameraAnalysis
from benchmarks.records import FrameRecord, RunnerState, TrialSpec
from core.types import Frame
from pipeline.sampler import TimeSampler

# what a careful user sets so RTSP runs over TCP, as in our runner
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

import cv2
import numpy as np

BASELINE_TOLERANCE_S = 0.002
"""OpenCV reports positions in whole milliseconds, so a frame due at 2.0 s can read 1.999 s: two
milliseconds of clock rounding count as on time (the sampler is pipeline.sampler.TimeSampler, the
one the pipeline uses; at 25 fps the next frame is 40 ms away, so this never picks an early frame)."""


class OpenCvThreadRunner:
    def __init__(self, spec: TrialSpec, state: RunnerState, detector: Any) -> None:
        self.spec = spec
        self.state = state
        self.detector = detector
        self.threads = [threading.Thread(target=self._run, args=(i, url), name=f"cv-{i}", daemon=True)
                        for i, url in enumerate(spec.urls)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.state.stop.set()
        for t in self.threads:
            t.join(timeout=15)

    def _run(self, camera: int, url: str) -> None:
        stop = self.state.stop
        if stop.wait(self.spec.stagger_s * camera / max(1, self.spec.n)):
            return
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            self.state.fail(camera, "VideoCapture could not open the stream")
            return
        sampler = TimeSampler(1.0 / self.spec.analysis_fps, tolerance_s=BASELINE_TOLERANCE_S)
        analysis: CameraAnalysis | None = None
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                ok, image = cap.read()
                arrival = time.monotonic()
                read_s = time.perf_counter() - t0
                if not ok or image is None:
                    if not stop.is_set():
                        self.state.fail(camera, "VideoCapture.read() returned no frame")
                    return
                pts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if not sampler.due(pts):
                    continue
                ready = time.monotonic()
                t1 = time.perf_counter()
                det = self.detector.detect([image])[0]
                infer_s = time.perf_counter() - t1
                if analysis is None:
                    analysis = CameraAnalysis(f"cam{camera}", self.spec.model)
                times = analysis.step(Frame(f"cam{camera}", pts, time.time(), image.astype(np.uint8, copy=False)), det)
                self.state.add(FrameRecord(
                    camera=camera, pts=pts, arrival=arrival, decided=time.monotonic(), decode_s=read_s,
                    wait_s=ready - arrival, infer_s=infer_s, track_s=times.track_s, rules_s=times.rules_s))
        finally:
            cap.release()
