"""Camera health end to end: a real RTSP camera dies and comes back under a running worker.

GStreamer RTSP server (with a password) -> PatrolWorker -> the real outbox (SQLite) -> mosquitto.
Killing the server opens one camera_offline incident, restarting it closes that incident; both
events and the retained ``{prefix}/health/{camera}`` state reach the broker, and the camera's
password appears in no message and no log line.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.outbox import Outbox
from camera_config.loader import parse_config
from core.events import IncidentEvent
from core.fakes import ListSink, ScriptedDetector
from core.types import Detections, Frame
from patrol.commands.run import FanOutSink
from pipeline.sources import SourceState
from pipeline.worker import PatrolWorker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIP = "vehicle_counting_input_video"
PASSWORD = "n0t-in-any-log"


class FrameCounter:
    def __init__(self) -> None:
        self.walls: list[float] = []

    def process(self, frame: Frame, detections: Detections) -> list[IncidentEvent]:
        self.walls.append(frame.wall_time)
        return []


class Subscriber:
    def __init__(self, port: int, topic: str, client_id: str) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, str, bool]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(what: str, cond: Callable[[], bool], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.time()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_dead_camera_opens_camera_offline_and_restore_closes_it(
        rtsp_server: Any, asset_path: Any, mosquitto: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    srv = rtsp_server({"street": asset_path(CLIP)}, user="admin", password=PASSWORD)
    site = parse_config({
        "site": {"name": "health"},
        "cameras": [{"id": "gate", "url": srv.url("street", user="admin", password=PASSWORD),
                     "grid_cell": "G-12", "analysis_fps": 4,
                     # a generous open timeout: a restarted server prerolls before it answers DESCRIBE
                     "watchdog": {"stall_timeout_s": 3.0, "backoff_initial_s": 0.5, "backoff_max_s": 1.0,
                                  "open_timeout_s": 15.0, "offline_after_s": 1.5}}],
        "mqtt": {"port": mosquitto.port, "client_id": "health-test"},
        "database": {"url": f"sqlite:///{tmp_path / 'pipe.db'}"}})
    live = Subscriber(mosquitto.port, "patrol/v1/#", "live-watcher")
    wait_for("subscriber connected", live.client.is_connected, 10)
    listed, frames = ListSink(), FrameCounter()
    with Outbox.from_site(site, "pipe-h") as outbox:
        worker = PatrolWorker(site, detector_loader=lambda _m, _s: ScriptedDetector.nothing(),
                              analyzer_factory=lambda _c, _s: frames, sink=FanOutSink(outbox.sink, listed))
        src = worker.cameras["gate"].source
        # connecting takes longer than this test's short offline_after_s: health checks run in
        # worker.run(), so let the camera come up first (a slow start-up counts as an outage too)
        worker.start()
        wait_for("streaming", lambda: src.state is SourceState.STREAMING, 30)
        runner = threading.Thread(target=worker.run, name="worker")
        runner.start()
        try:
            wait_for("frames", lambda: len(frames.walls) >= 4, 30)
            srv.kill()
            killed_at = time.time()
            opened_at = wait_for("camera_offline opened", lambda: len(listed.events) >= 1, 20)
            assert src.state is not SourceState.STREAMING
            srv.start()
            wait_for("camera_offline closed", lambda: len(listed.events) >= 2, 60)
            assert src.state is SourceState.STREAMING
        finally:
            worker.request_stop()
            runner.join(60)
        assert not runner.is_alive()
        outbox.sink.flush(10)
    assert opened_at - killed_at >= 1.5  # not before offline_after_s

    opened, closed = listed.events
    assert [(e.type, e.event, e.seq) for e in listed.events] == [("camera_offline", "opened", 1),
                                                                ("camera_offline", "closed", 2)]
    assert opened.incident_id == closed.incident_id
    assert (opened.camera_id, opened.grid_cell, opened.severity) == ("gate", "G-12", "high")
    assert killed_at - 0.5 <= opened.started_at <= opened.event_at
    assert opened.evidence.durations["offline_s"] > 1.5
    assert closed.evidence.durations["offline_s"] >= opened.evidence.durations["offline_s"]

    wait_for("both events and three health reports on the broker",
             lambda: sum("/health/" in t for t, _, _ in live.snapshot()) >= 3, 15)
    got = live.snapshot()
    live.close()
    incident_msgs = [json.loads(p) for t, p, _ in got if t == "patrol/v1/incidents/camera_offline/gate"]
    assert [(m["event"], m["seq"], m["incident_id"]) for m in incident_msgs] == [
        ("opened", 1, opened.incident_id), ("closed", 2, opened.incident_id)]
    health = [json.loads(p) for t, p, _ in got if t == "patrol/v1/health/gate"]
    assert [h["state"] for h in health] == ["online", "offline", "online"]
    assert health[1]["incident_id"] == opened.incident_id and health[1]["error"]

    late = Subscriber(mosquitto.port, "patrol/v1/health/#", "late-watcher")
    wait_for("the retained health state", lambda: bool(late.snapshot()), 10)
    (topic, payload, retained), = late.snapshot()
    late.close()
    assert (topic, json.loads(payload)["state"], retained) == ("patrol/v1/health/gate", "online", True)

    leaks = [p for _, p, _ in got if PASSWORD in p] + [r.getMessage() for r in caplog.records
                                                       if PASSWORD in r.getMessage()]
    assert not leaks
    print(f"\nopened {opened_at - killed_at:.1f} s after the kill, offline for "
          f"{closed.evidence.durations['offline_s']:.1f} s; health reports: {[h['state'] for h in health]}; "
          f"offline reason: {health[1]['error']}")
