"""The camera worker: one batching inference loop over latest-frame slots, failures isolated."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from camera_config.loader import parse_config
from camera_config.schema import DetectorChoice
from core.coco import CLASS_ID
from core.events import IncidentEvent
from core.fakes import ListSink
from core.types import Detections, Frame
from pipeline.sources import SourceState
from pipeline.worker import JsonLinesSink, PatrolWorker, lowest_score
from rules.analyzer import camera_analyzer

IMAGE = np.zeros((36, 64, 3), np.uint8)


class ScriptedDetector:
    """Returns, per image, one car at 0.9 and one person at 0.2 (below a 0.3 default threshold)."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.warmed = False

    def warmup(self) -> None:
        self.warmed = True

    def detect(self, images: Sequence[Any]) -> list[Detections]:
        self.batches.append(len(images))
        return [Detections(np.array([[1, 1, 20, 20], [30, 5, 40, 30]], np.float32), np.array([0.9, 0.2], np.float32),
                           np.array([CLASS_ID["car"], CLASS_ID["person"]], np.int32)) for _ in images]


class EventAnalyzer:
    """Emits one 'opened' event on its first frame; fails on demand."""

    def __init__(self, camera_id: str, fail: bool = False) -> None:
        self.camera_id = camera_id
        self.fail = fail
        self.frames: list[Frame] = []

    def process(self, frame: Frame, detections: Detections) -> list[IncidentEvent]:
        if self.fail:
            raise RuntimeError("analyzer exploded")
        self.frames.append(frame)
        if len(self.frames) > 1:
            return []
        return [IncidentEvent(incident_id=f"inc-{self.camera_id}-0001", seq=1, event="opened",
                              type="illegal_parking", camera_id=self.camera_id, grid_cell="G1",
                              started_at=frame.wall_time, event_at=frame.wall_time, stream_pts=frame.pts)]


def site(cameras: dict[str, str], **extra: Any) -> Any:
    return parse_config({"site": {"name": "w"}, "cameras": [
        {"id": cid, "url": url, "grid_cell": "G1", **extra} for cid, url in cameras.items()]})


def make_worker(cameras: dict[str, str], fail: set[str] = frozenset(), **kw: Any) -> tuple[PatrolWorker, Any, Any, Any]:
    det = ScriptedDetector()
    sink = ListSink()
    analyzers: dict[str, EventAnalyzer] = {}

    def factory(camera: Any, _site: Any) -> EventAnalyzer:
        return analyzers.setdefault(camera.id, EventAnalyzer(camera.id, camera.id in fail))

    kw.setdefault("stale_after_s", None)  # the scripted frames carry wall times of long ago
    worker = PatrolWorker(site(cameras, **kw.pop("camera", {})), detector_loader=lambda _m, _s: det,
                          analyzer_factory=factory, sink=sink, **kw)
    return worker, det, sink, analyzers


def frame(cam: str, pts: float) -> Frame:
    return Frame(camera_id=cam, pts=pts, wall_time=1_700_000_000.0 + pts, image=IMAGE)


def test_step_batches_latest_frame_of_every_camera() -> None:
    worker, det, sink, analyzers = make_worker({"a": "a.mp4", "b": "b.mp4", "c": "c.mp4"})
    worker.load_detectors()
    assert det.warmed
    for pts in (0.0, 1.0, 2.0):
        worker.cameras["a"].slot.put(frame("a", pts))
    worker.cameras["b"].slot.put(frame("b", 5.0))
    assert worker.step() == 2
    assert det.batches == [2]  # one detect() call for both cameras
    assert [f.pts for f in analyzers["a"].frames] == [2.0]  # only the latest, two dropped
    assert [f.pts for f in analyzers["b"].frames] == [5.0]
    assert analyzers["c"].frames == []
    assert [e.camera_id for e in sink.events] == ["a", "b"]
    rows = {r["camera_id"]: r for r in worker.summary()}
    assert rows["a"]["frames_dropped"] == 2 and rows["a"]["frames_analysed"] == 1
    assert rows["a"]["detections"] == {}  # this analyzer reports no kept detections to count
    assert rows["a"]["events"] == 1
    assert worker.step() == 0 and det.batches == [2]


def test_batches_are_capped_and_cameras_take_turns() -> None:
    """Five cameras with frames waiting, batches of two: every camera is served within three cycles,
    round-robin from where the last full batch stopped, and the first camera does not go first twice."""
    cams = {c: f"{c}.mp4" for c in "abcde"}
    worker, det, _sink, analyzers = make_worker(cams, max_batch=2)
    worker.load_detectors()
    for c in cams:
        worker.cameras[c].slot.put(frame(c, 1.0))
    assert [worker.step() for _ in range(4)] == [2, 2, 1, 0]
    assert det.batches == [2, 2, 1]
    assert all(len(analyzers[c].frames) == 1 for c in cams)
    for c in "ab":  # both early cameras have new frames; the turn is now with c, d, e, a, ...
        worker.cameras[c].slot.put(frame(c, 2.0))
    worker.cameras["e"].slot.put(frame("e", 2.0))
    assert worker.step() == 2
    assert [len(analyzers[c].frames) for c in "abe"] == [2, 1, 2]  # e then a; b waits its turn


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        make_worker({"a": "a.mp4"}, max_batch=0)


def test_analyzer_failure_is_isolated_to_its_camera() -> None:
    worker, _det, sink, analyzers = make_worker({"bad": "a.mp4", "good": "b.mp4"}, fail={"bad"})
    worker.load_detectors()
    for pts in (0.0, 1.0):
        worker.cameras["bad"].slot.put(frame("bad", pts))
        worker.cameras["good"].slot.put(frame("good", pts))
        worker.step()
    assert [f.pts for f in analyzers["good"].frames] == [0.0, 1.0]
    assert worker.cameras["bad"].analyzer_errors == 2
    assert [e.camera_id for e in sink.events] == ["good"]


def analysing_worker(cameras: dict[str, str], **camera: Any) -> PatrolWorker:
    """A worker over the scripted detector with the real analyzer (which applies the thresholds)."""
    det = ScriptedDetector()
    return PatrolWorker(site(cameras, **camera), detector_loader=lambda _m, _s: det,
                        analyzer_factory=camera_analyzer, sink=ListSink(), stale_after_s=None)


def test_class_score_thresholds_per_camera() -> None:
    worker = analysing_worker({"a": "a.mp4"}, detector={"class_scores": {"person": 0.1}})
    worker.load_detectors()
    worker.cameras["a"].slot.put(frame("a", 0.0))
    worker.step()
    assert worker.summary()[0]["detections"] == {"car": 1, "person": 1}
    assert lowest_score([DetectorChoice(default_score=0.4, class_scores={"car": 0.25}, ignore_score=0.3),
                         DetectorChoice(default_score=0.35, ignore_score=0.3)]) == pytest.approx(0.25)
    # the background model's people (detector.ignore_score) need the model to run that low too
    assert lowest_score([DetectorChoice(default_score=0.4, ignore_score=0.15)]) == pytest.approx(0.15)


def test_truncated_camera_fails_while_the_other_runs_to_the_end(asset_path: Any, tmp_path: Path) -> None:
    good = asset_path("car_detection")
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    worker, _det, sink, _analyzers = make_worker({"cut": str(cut), "good": str(good)}, realtime=False,
                                               camera={"analysis_fps": 2.0})
    worker.run()  # returns when both files have ended
    cut_rt, good_rt = worker.cameras["cut"], worker.cameras["good"]
    assert cut_rt.source.state is SourceState.FAILED
    assert "truncated" in str(cut_rt.source.error) and "'cut'" in str(cut_rt.source.error)
    assert good_rt.source.state is SourceState.STOPPED and good_rt.source.error is None
    assert good_rt.metrics.frames_in == 61  # 30.16 s at 2 fps, every sampled frame handed over
    assert good_rt.metrics.frames_analysed + good_rt.slot.dropped == 61
    assert good_rt.metrics.frames_analysed >= 1 and sink.flushed == 1
    rows = {r["camera_id"]: r for r in worker.summary()}
    assert rows["cut"]["state"] == "failed" and "truncated" in rows["cut"]["last_error"]


def test_request_stop_from_another_thread(asset_path: Any) -> None:
    worker, _det, sink, analyzers = make_worker({"a": str(asset_path("vehicle_counting_input_video"))},
                                               realtime=True)
    done = threading.Event()

    def run() -> None:
        worker.run()
        done.set()

    t = threading.Thread(target=run)
    t.start()
    while not analyzers.get("a") or not analyzers["a"].frames:
        assert t.is_alive()
        done.wait(0.05)
    worker.request_stop()
    t.join(30)
    assert done.is_set() and sink.flushed == 1
    assert worker.cameras["a"].source.state is SourceState.STOPPED
    assert worker.cameras["a"].source.join(0)


def test_prometheus_exposition_has_per_camera_series() -> None:
    worker, *_ = make_worker({"a": "a.mp4", "b": "b.mp4"})
    worker.load_detectors()
    worker.cameras["a"].slot.put(frame("a", 0.0))
    worker.cameras["a"].slot.put(frame("a", 1.0))
    worker.step()
    text = generate_latest(worker.registry).decode()
    assert 'patrol_frames_analysed_total{camera="a"} 1.0' in text
    assert 'patrol_frames_dropped_total{camera="a"} 1.0' in text
    assert 'patrol_frames_analysed_total{camera="b"} 0.0' in text
    assert 'patrol_camera_state{camera="a",state="connecting"} 1.0' in text
    assert 'patrol_stage_seconds_count{camera="a",stage="infer"} 1.0' in text


def test_detection_counts_are_what_the_analyzer_kept() -> None:
    """The analyzer applies the score thresholds (once a frame); the worker counts what its report
    kept: the car at 0.9, not the person at 0.2 under the 0.3 default."""
    worker = analysing_worker({"a": "a.mp4", "b": "b.mp4"}, detector={"default_score": 0.3})
    worker.load_detectors()
    worker.cameras["a"].slot.put(frame("a", 0.0))
    worker.step()
    text = generate_latest(worker.registry).decode()
    assert 'patrol_detections_total{camera="a",class="car"} 1.0' in text
    assert 'class="person"' not in text
    rows = {r["camera_id"]: r for r in worker.summary()}
    assert rows["a"]["detections"] == {"car": 1} and rows["b"]["detections"] == {}
    assert worker.cameras["a"].analyzer.last.kept.class_id.tolist() == [CLASS_ID["car"]]  # type: ignore[attr-defined]


def test_json_lines_sink_writes_one_event_per_line() -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    analyzer = EventAnalyzer("a")
    sink.publish(analyzer.process(frame("a", 3.0), Detections.empty()))
    sink.flush()
    line = json.loads(out.getvalue())
    assert line["incident_id"] == "inc-a-0001" and line["stream_pts"] == 3.0 and sink.published == 1


def test_patrol_run_gives_the_worker_the_rules_analyzer() -> None:
    """The worker never imports the rules; ``patrol run`` injects them through the factory."""
    from patrol.commands.run import wire_outputs

    cfg = site({"a": "a.mp4"})
    args = argparse.Namespace(no_publish=True, no_evidence=True, db=None)
    with contextlib.ExitStack() as stack:
        factory = wire_outputs(cfg, args, stack)["analyzer_factory"]
    assert factory is camera_analyzer
    assert type(factory(cfg.cameras[0], cfg)).__name__ == "CameraAnalyzer"


def test_run_analyses_on_its_own_thread_in_order_and_loses_nothing_at_the_end(asset_path: Any) -> None:
    """Inference and analysis overlap: analysers and the sink run on one 'analysis' thread, each
    camera's frames in stream order, and every frame taken for inference is analysed before run()
    returns (a slow analyser pushes back on inference instead of being cut short)."""
    worker, det, sink, analyzers = make_worker({"a": str(asset_path("car_detection")),
                                                "b": str(asset_path("vehicle_counting_input_video"))},
                                               realtime=False, camera={"analysis_fps": 4.0})
    analyser_threads: set[str] = set()
    sink_threads: set[str] = set()
    inference_threads: set[str] = set()
    for cid in ("a", "b"):
        inner = analyzers[cid].process

        def slow(f: Frame, d: Detections, inner: Any = inner) -> list[IncidentEvent]:
            analyser_threads.add(threading.current_thread().name)
            threading.Event().wait(0.002)
            return inner(f, d)
        analyzers[cid].process = slow
    detect, publish = det.detect, sink.publish

    def noted_detect(images: Sequence[Any]) -> list[Detections]:
        inference_threads.add(threading.current_thread().name)
        return detect(images)

    def noted_publish(events: Sequence[IncidentEvent]) -> None:
        sink_threads.add(threading.current_thread().name)
        publish(events)
    det.detect = noted_detect
    sink.publish = noted_publish
    worker.run()
    assert analyser_threads == sink_threads == {"analysis"} and "analysis" not in inference_threads
    for cid in ("a", "b"):
        rt = worker.cameras[cid]
        pts = [f.pts for f in analyzers[cid].frames]
        assert pts == sorted(pts) and len(pts) == rt.metrics.frames_analysed >= 1
        assert rt.metrics.frames_analysed + rt.slot.dropped == rt.metrics.frames_in
    assert sum(det.batches) == sum(rt.metrics.frames_analysed for rt in worker.cameras.values())
    assert sorted(e.camera_id for e in sink.events) == ["a", "b"] and sink.flushed == 1


def test_a_frame_that_waited_too_long_is_skipped_and_counted_not_analysed_late() -> None:
    worker, det, _sink, analyzers = make_worker({"a": "a.mp4", "b": "b.mp4"}, stale_after_s=0.8)
    worker.load_detectors()
    now = time.time()
    worker.cameras["a"].slot.put(Frame(camera_id="a", pts=0.0, wall_time=now - 2.0, image=IMAGE))
    worker.cameras["b"].slot.put(Frame(camera_id="b", pts=0.0, wall_time=now - 0.1, image=IMAGE))
    assert worker.step() == 1 and det.batches == [1]
    assert "a" not in analyzers or not analyzers["a"].frames
    assert [f.camera_id for f in analyzers["b"].frames] == ["b"]
    row = {r["camera_id"]: r for r in worker.summary()}["a"]
    assert row["frames_dropped"] == 1 and row["frames_stale"] == 1 and row["frames_analysed"] == 0
    # fresh when taken, stale by the time inference is done: inference is spent, analysis skipped
    slow = det.detect
    det.detect = lambda images: (time.sleep(0.3), slow(images))[1]  # type: ignore[method-assign]
    worker.cameras["b"].slot.put(Frame(camera_id="b", pts=1.0, wall_time=time.time() - 0.6, image=IMAGE))
    assert worker.step() == 1 and det.batches == [1, 1]
    assert [f.pts for f in analyzers["b"].frames] == [0.0]
    assert {r["camera_id"]: r for r in worker.summary()}["b"]["frames_stale"] == 1
    # replaying files faster than real time: frames are never stale
    replay, *_ = make_worker({"a": "a.mp4"}, stale_after_s=0.8, realtime=False)
    assert replay.stale_after_s is None
    with pytest.raises(ValueError, match="stale_after_s"):
        make_worker({"a": "a.mp4"}, stale_after_s=0.0)


def test_past_capacity_a_starved_camera_gets_a_late_frame_analysed_not_none() -> None:
    """Every frame late (overload): a camera that has gone STARVED_AFTER_INTERVALS analysis intervals
    (here 4 x 0.1 s) without an analysed frame gets the next one analysed; then shedding resumes."""
    worker, _det, _sink, analyzers = make_worker({"a": "a.mp4"}, stale_after_s=0.8, camera={"analysis_fps": 10})
    worker.load_detectors()

    def late(pts: float) -> Frame:
        return Frame(camera_id="a", pts=pts, wall_time=time.time() - 2.0, image=IMAGE)

    worker.cameras["a"].slot.put(late(0.0))
    assert worker.step() == 0  # the camera was analysed (made) moments ago: shed
    time.sleep(0.5)
    worker.cameras["a"].slot.put(late(1.0))
    assert worker.step() == 1  # 0.5 s > 4 intervals without a frame: analysed although late
    worker.cameras["a"].slot.put(late(2.0))
    assert worker.step() == 0  # just analysed: shed again
    assert [f.pts for f in analyzers["a"].frames] == [1.0]
    row = worker.summary()[0]
    assert row["frames_analysed"] == 1 and row["frames_stale"] == 2
