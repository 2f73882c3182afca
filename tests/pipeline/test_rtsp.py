"""Real RTSP: two cameras on two GStreamer servers; one server dies and comes back.

The camera on the killed server must go RECONNECTING and then STREAMING again by itself, with
frames resuming, while the camera on the other server never stops receiving frames.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from camera_config.loader import parse_config
from core.fakes import ScriptedDetector
from core.types import Detections, Frame
from pipeline.sources import SourceState
from pipeline.worker import PatrolWorker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = "vehicle_counting_input_video"


class RecordingAnalyzer:
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def process(self, frame: Frame, detections: Detections) -> list[Any]:
        self.frames.append(frame)
        return []


def wait_for(what: str, cond: Callable[[], bool], timeout: float) -> float:
    """Poll ``cond`` until true; return the wall time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.time()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def site(urls: dict[str, str], analysis_fps: float = 4.0) -> Any:
    # short stall timeout and backoff so the test is quick; a generous open timeout because a
    # restarted server prerolls its pipeline before it answers DESCRIBE (slow on a loaded machine)
    watchdog = {"stall_timeout_s": 3.0, "backoff_initial_s": 0.5, "backoff_max_s": 2.0, "open_timeout_s": 15.0}
    return parse_config({"site": {"name": "rtsp-test"}, "cameras": [
        {"id": cam, "url": url, "grid_cell": "G1", "analysis_fps": analysis_fps, "watchdog": watchdog}
        for cam, url in urls.items()]})


def test_killed_server_reconnects_other_camera_unaffected(rtsp_server: Any, asset_path: Any) -> None:
    clip = asset_path(CLIP)
    srv_a = rtsp_server({"street": clip})
    srv_b = rtsp_server({"street": clip})
    analyzers: dict[str, RecordingAnalyzer] = {}

    def analyzer(camera: Any, _site: Any) -> RecordingAnalyzer:
        return analyzers.setdefault(camera.id, RecordingAnalyzer())

    worker = PatrolWorker(site({"a": srv_a.url("street"), "b": srv_b.url("street")}),
                          detector_loader=lambda _m, _s: ScriptedDetector.nothing(), analyzer_factory=analyzer,
                          sink=None)
    src_a, src_b = worker.cameras["a"].source, worker.cameras["b"].source
    runner = threading.Thread(target=worker.run, name="worker")
    runner.start()
    try:
        wait_for("both cameras streaming", lambda: len(analyzers["a"].frames) >= 8
                 and len(analyzers["b"].frames) >= 8, 30)
        srv_a.kill()
        killed_at = time.time()
        wait_for("camera a reconnecting", lambda: src_a.state is SourceState.RECONNECTING, 20)
        time.sleep(2.0)  # the camera stays down for a while; a keeps retrying with backoff
        srv_a.start()
        restarted_at = time.time()
        wait_for("camera a streaming again", lambda: src_a.state is SourceState.STREAMING, 60)
        wait_for("frames from a after the restart",
                 lambda: sum(f.wall_time > restarted_at for f in analyzers["a"].frames) >= 8, 30)
        ended_at = time.time()
    finally:
        worker.request_stop()
        runner.join(60)
    assert not runner.is_alive()

    states_a = [s for _, s in src_a.state_history]
    assert states_a[:2] == [SourceState.CONNECTING, SourceState.STREAMING]
    i = states_a.index(SourceState.RECONNECTING)
    assert SourceState.STREAMING in states_a[i:] and states_a[-1] is SourceState.STOPPED
    assert worker.cameras["a"].metrics.reconnects >= 1

    frames_a = analyzers["a"].frames
    before = [f for f in frames_a if f.wall_time <= killed_at]
    after = [f for f in frames_a if f.wall_time > restarted_at]
    assert before and len(after) >= 8
    assert not [f for f in frames_a if killed_at + 1.0 < f.wall_time < restarted_at], \
        "frames while the server was down"
    # a new connection restarts the stream clock; within a connection pts keep increasing
    assert np.all(np.diff([f.pts for f in after]) > 0)
    assert after[0].pts < before[-1].pts + (after[0].wall_time - before[-1].wall_time)

    # camera b: never left STREAMING, frames kept coming through a's outage at ~4 fps
    assert [s for _, s in src_b.state_history] == [SourceState.CONNECTING, SourceState.STREAMING,
                                                   SourceState.STOPPED]
    assert worker.cameras["b"].metrics.reconnects == 0
    walls_b = [f.wall_time for f in analyzers["b"].frames if killed_at - 1 <= f.wall_time <= ended_at]
    assert len(walls_b) >= 2.0 * (ended_at - killed_at)  # well above half the 4 fps analysis rate
    assert max(b - a for a, b in pairwise(walls_b)) < 2.0
    pts_b = [f.pts for f in analyzers["b"].frames]
    assert np.all(np.diff(pts_b) > 0), "b's stream clock never restarted"
    print(f"\na: {len(before)} frames before kill, {len(after)} after restart, states "
          f"{[s.value for s in states_a]}; b: {len(pts_b)} frames, max gap during outage "
          f"{max(b - a for a, b in pairwise(walls_b)):.2f} s")


def test_hung_server_trips_the_stall_watchdog(rtsp_server: Any, asset_path: Any) -> None:
    """A server that keeps its socket open but sends nothing: no frame for stall_timeout_s -> reconnect."""
    srv = rtsp_server({"street": asset_path(CLIP)})
    analyzers: dict[str, RecordingAnalyzer] = {}
    cfg = parse_config({"site": {"name": "stall"}, "cameras": [{
        "id": "h", "url": srv.url("street"), "grid_cell": "G1", "analysis_fps": 4,
        "watchdog": {"stall_timeout_s": 2.0, "backoff_initial_s": 0.5, "backoff_max_s": 1.0,
                     "open_timeout_s": 15.0}}]})
    worker = PatrolWorker(cfg, detector_loader=lambda _m, _s: ScriptedDetector.nothing(),
                          analyzer_factory=lambda cam, _s: analyzers.setdefault(cam.id, RecordingAnalyzer()))
    src = worker.cameras["h"].source
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for("frames", lambda: len(analyzers.get("h", RecordingAnalyzer()).frames) >= 4, 30)
        srv.pause()
        paused_at = time.time()
        tripped_at = wait_for("watchdog", lambda: src.state is SourceState.RECONNECTING, 20)
        srv.resume()
        resumed_at = time.time()
        wait_for("streaming again", lambda: src.state is SourceState.STREAMING
                 and sum(f.wall_time > resumed_at for f in analyzers["h"].frames) >= 4, 60)
    finally:
        srv.resume()
        worker.request_stop()
        runner.join(60)
    assert tripped_at - paused_at >= 1.5  # not before the stall timeout (2 s, minus buffered frames)
    assert "stalled" in (worker.cameras["h"].metrics.last_error or "")
    assert worker.cameras["h"].metrics.reconnects >= 1


def test_camera_sending_several_slices_per_frame_decodes_whole_pictures(rtsp_server: Any, asset_path: Any) -> None:
    """Two slices per frame over RTSP: every analysed picture is whole (no black or grey half).

    Over the whole street clip the top half (trees, sky) has mean grey 67..87 and the bottom (road)
    109..142; a lost or mis-split slice showed as a top half near 0 or near 130.
    """
    srv = rtsp_server({"cam": asset_path(CLIP)}, fps=10, gop=2.0, slices=2)
    analyzers: dict[str, RecordingAnalyzer] = {}
    worker = PatrolWorker(site({"s": srv.url("cam")}, analysis_fps=5),
                          detector_loader=lambda _m, _s: ScriptedDetector.nothing(),
                          analyzer_factory=lambda cam, _s: analyzers.setdefault(cam.id, RecordingAnalyzer()))
    runner = threading.Thread(target=worker.run, kwargs={"duration": 60})
    runner.start()
    try:
        wait_for("ten analysed frames", lambda: len(analyzers.get("s", RecordingAnalyzer()).frames) >= 10, 40)
    finally:
        worker.request_stop()
        runner.join(60)
    grey = [f.image.mean(axis=2) for f in analyzers["s"].frames]
    halves = [(float(g[:176].mean()), float(g[176:].mean())) for g in grey]
    print(f"\nmean grey of top/bottom halves: {[(round(a), round(b)) for a, b in halves]}")
    assert all(55 < top < 100 and bottom > 95 for top, bottom in halves)


def test_udp_transport(rtsp_server: Any, asset_path: Any) -> None:
    srv = rtsp_server({"street": asset_path(CLIP)})
    cfg = parse_config({"site": {"name": "udp"}, "cameras": [
        {"id": "u", "url": srv.url("street"), "grid_cell": "G1", "analysis_fps": 4, "transport": "udp"}]})
    analyzers: dict[str, RecordingAnalyzer] = {}
    worker = PatrolWorker(cfg, detector_loader=lambda _m, _s: ScriptedDetector.nothing(),
                          analyzer_factory=lambda cam, _s: analyzers.setdefault(cam.id, RecordingAnalyzer()))
    runner = threading.Thread(target=worker.run, kwargs={"duration": 60})
    runner.start()
    try:
        wait_for("frames over UDP", lambda: len(analyzers.get("u", RecordingAnalyzer()).frames) >= 6, 40)
    finally:
        worker.request_stop()
        runner.join(60)
    frames = analyzers["u"].frames
    assert frames[0].image.shape == (352, 640, 3) and np.all(np.diff([f.pts for f in frames]) > 0)


def test_rtsp_keyframe_only_over_the_wire(rtsp_server: Any, asset_path: Any) -> None:
    """Re-encoded 1 s GOP, analysis every 3 s: only keyframes are decoded from the live stream."""
    srv = rtsp_server({"cam": asset_path(CLIP)}, fps=10, gop=1.0)
    analyzers: dict[str, RecordingAnalyzer] = {}
    key_packets: list[int | None] = []

    def listener(packet: Any, _stream: Any) -> None:
        if packet.is_keyframe:
            key_packets.append(packet.pts)

    worker = PatrolWorker(site({"k": srv.url("cam")}, analysis_fps=1 / 3),
                          detector_loader=lambda _m, _s: ScriptedDetector.nothing(),
                          analyzer_factory=lambda cam, _s: analyzers.setdefault(cam.id, RecordingAnalyzer()),
                          packet_listeners=lambda _cam: listener)
    runner = threading.Thread(target=worker.run, kwargs={"duration": 60})
    runner.start()
    try:
        wait_for("four analysed frames", lambda: len(analyzers.get("k", RecordingAnalyzer()).frames) >= 4, 40)
    finally:
        worker.request_stop()
        runner.join(60)
    m = worker.cameras["k"].metrics
    print(f"\nRTSP keyframe-only: decoded {m.frames_decoded} of {m.packets} packets "
          f"({len(key_packets)} keyframes), keyframe every {m.keyframe_interval_s} s")
    assert m.keyframe_only and m.keyframe_interval_s == pytest.approx(1.0, abs=0.15)
    assert m.frames_decoded <= len(key_packets) and m.packets >= 5 * len(key_packets)
    assert all(f.keyframe for f in analyzers["k"].frames)
