"""Camera health: timelines of source states on a fake clock -> camera_offline events."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from camera_config.loader import parse_config
from core.errors import ConfigError
from core.events import IncidentEvent
from core.fakes import ListSink, ScriptedDetector
from patrol.commands.run import FanOutSink
from pipeline.health import CameraHealth, HealthMonitor, outage_id, publish_health
from pipeline.sources import SourceState
from pipeline.worker import PatrolWorker
from rules.analyzer import camera_analyzer
from storage import repository as repo
from storage.db import Database

C, S, R, X, F = (SourceState.CONNECTING, SourceState.STREAMING, SourceState.RECONNECTING,
                 SourceState.STOPPED, SourceState.FAILED)
T0 = 1_700_000_000.0  # wall clock at t = 0
PASSWORD = "s3cr3t-pw"
ERROR = f"camera cam-1: cannot open stream rtsp://admin:{PASSWORD}@10.0.0.7/live: Connection refused"


def run(timeline: Sequence[tuple[float, SourceState]], offline_after_s: float = 30.0,
        error: str | None = ERROR) -> list[tuple[float, IncidentEvent]]:
    """Feed (t, state) pairs, t in seconds; wall = T0 + t, monotonic = t. Returns (t, event)."""
    health = CameraHealth("cam-1", "G-07", offline_after_s=offline_after_s)
    out = []
    for t, state in timeline:
        for ev in health.update(state, T0 + t, t, error if state is not S else None):
            out.append((t, ev))
    return out


def ticks(start: float, end: float, state: SourceState, step: float = 0.25) -> list[tuple[float, SourceState]]:
    n = round((end - start) / step)
    return [(start + i * step, state) for i in range(n)]


STREAM_0_10 = ticks(0, 10, S)

# (name, timeline, offline_after_s, expected [(t, event, offline_s)])
CASES = [
    ("streaming only", ticks(0, 60, S), 30.0, []),
    ("1 s blip", STREAM_0_10 + ticks(10, 11, R) + ticks(11, 60, S), 30.0, []),
    ("blip just under the threshold", STREAM_0_10 + ticks(10, 15, R) + ticks(15, 30, S), 5.0, []),
    ("outage, restore", STREAM_0_10 + ticks(10, 50, R) + ticks(50, 60, S), 30.0,
     [(40.25, "opened", 30.25), (50.0, "closed", 40.0)]),
    ("never connects", ticks(0, 40, C), 30.0, [(30.25, "opened", 30.25)]),
    ("outage still open at the end", STREAM_0_10 + ticks(10, 60, R), 5.0, [(15.25, "opened", 5.25)]),
    ("FAILED opens at once", STREAM_0_10 + ticks(10, 20, F), 30.0, [(10.0, "opened", 0.0)]),
    ("FAILED after a while connecting", ticks(0, 2, C) + ticks(2, 5, F), 30.0, [(2.0, "opened", 2.0)]),
    ("stopped cleanly (file end, worker stop)", STREAM_0_10 + ticks(10, 60, X), 5.0, []),
    ("stopped during the debounce", STREAM_0_10 + ticks(10, 12, R) + ticks(12, 60, X), 5.0, []),
    ("two outages, two incidents", STREAM_0_10 + ticks(10, 20, R) + ticks(20, 30, S) + ticks(30, 40, R)
     + ticks(40, 45, S), 5.0,
     [(15.25, "opened", 5.25), (20.0, "closed", 10.0), (35.25, "opened", 5.25), (40.0, "closed", 10.0)]),
    ("reconnecting then connecting counts as one outage", STREAM_0_10 + ticks(10, 13, R) + ticks(13, 16, C)
     + ticks(16, 20, S), 5.0, [(15.25, "opened", 5.25), (16.0, "closed", 6.0)]),
]


@pytest.mark.parametrize(("timeline", "offline_after_s", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_timeline(timeline: list[tuple[float, SourceState]], offline_after_s: float,
                  expected: list[tuple[float, str, float]]) -> None:
    got = run(timeline, offline_after_s)
    # quarter seconds are exact in binary floating point
    assert [(t, ev.event, ev.evidence.durations["offline_s"]) for t, ev in got] == expected
    for t, ev in got:
        assert ev.type == "camera_offline" and ev.camera_id == "cam-1" and ev.grid_cell == "G-07"
        assert ev.severity == "high" and ev.zone_id is None
        assert ev.event_at == T0 + t
        assert ev.evidence.thresholds == {"offline_after_s": offline_after_s}


def test_one_outage_has_one_stable_id_and_seq_1_then_2() -> None:
    got = [ev for _, ev in run(STREAM_0_10 + ticks(10, 50, R) + ticks(50, 60, S))]
    assert [(ev.event, ev.seq) for ev in got] == [("opened", 1), ("closed", 2)]
    opened, closed = got
    assert opened.incident_id == closed.incident_id == outage_id("cam-1", T0 + 10)
    assert opened.started_at == closed.started_at == T0 + 10  # when the stream was first seen gone


def test_each_outage_gets_its_own_id() -> None:
    got = [ev for _, ev in run(STREAM_0_10 + ticks(10, 20, R) + ticks(20, 30, S) + ticks(30, 40, R)
                                + ticks(40, 45, S), offline_after_s=5)]
    ids = [ev.incident_id for ev in got]
    assert ids[0] == ids[1] != ids[2] == ids[3]
    assert [ev.seq for ev in got] == [1, 2, 1, 2]


def test_failed_source_is_flagged_in_the_evidence() -> None:
    (_, ev), = run(STREAM_0_10 + ticks(10, 20, F))
    assert ev.evidence.signals == {"source_failed": 1.0}
    (_, ev), *_ = run(STREAM_0_10 + ticks(10, 50, R))
    assert ev.evidence.signals == {"source_failed": 0.0}


def test_durations_follow_the_monotonic_clock_not_the_wall_clock() -> None:
    """A wall-clock jump (NTP) during an outage changes neither the debounce nor offline_s."""
    health = CameraHealth("cam-1", "G1", offline_after_s=10)
    assert health.update(S, T0, 0.0) == []
    assert health.update(R, T0 + 1, 1.0) == []
    assert health.update(R, T0 + 3_600, 2.0) == []  # wall clock jumped an hour; 1 s went by
    (ev,) = health.update(R, T0 + 3_610, 11.5)
    assert ev.evidence.durations["offline_s"] == 10.5 and ev.started_at == T0 + 1


def test_no_password_in_any_event_or_report() -> None:
    monitor = HealthMonitor(parse_config({"site": {"name": "h"}, "cameras": [
        {"id": "cam-1", "url": f"rtsp://admin:{PASSWORD}@10.0.0.7/live", "grid_cell": "G1",
         "watchdog": {"offline_after_s": 2}}]}).cameras)
    texts = []
    for t, state in STREAM_0_10 + ticks(10, 20, R) + ticks(20, 25, S) + ticks(25, 30, F):
        check = monitor.check({"cam-1": (state, ERROR)}, T0 + t, t)
        texts += [ev.to_json() for ev in check.events] + [r.payload() for r in check.reports]
    assert len(texts) == 3 + 4  # opened, closed, opened (FAILED); online, offline, online, offline
    assert not [t for t in texts if PASSWORD in t]
    assert any("admin:***@10.0.0.7" in t for t in texts)  # the error is there, redacted


def test_monitor_reports_state_changes_only() -> None:
    cfg = parse_config({"site": {"name": "h"}, "cameras": [
        {"id": "a", "url": "rtsp://10.0.0.1/x", "grid_cell": "G1", "watchdog": {"offline_after_s": 5}},
        {"id": "b", "url": "rtsp://10.0.0.2/x", "grid_cell": "G2", "watchdog": {"offline_after_s": 60}}]})
    monitor = HealthMonitor(cfg.cameras)
    reports = []
    for t, state in ticks(0, 3, C) + ticks(3, 10, S) + ticks(10, 20, R) + ticks(20, 25, S):
        check = monitor.check({"a": (state, "refused"), "b": (state, "refused")}, T0 + t, t)
        reports += [(r.camera_id, r.state, r.at - T0, r.incident_id is not None) for r in check.reports]
    # a: online at first frame, offline when its incident opens (15.25 s), online on restore;
    # b: its 60 s threshold is never reached, so it never reports offline
    assert reports == [("a", "online", 3.0, False), ("b", "online", 3.0, False),
                       ("a", "offline", 15.25, True), ("a", "online", 20.0, True)]


def test_offline_after_s_is_validated() -> None:
    with pytest.raises(ValueError, match="offline_after_s"):
        CameraHealth("c", "G1", offline_after_s=0)
    with pytest.raises(ConfigError, match="offline_after_s"):
        parse_config({"site": {"name": "h"}, "cameras": [
            {"id": "a", "url": "x.mp4", "grid_cell": "G1", "watchdog": {"offline_after_s": -1}}]})


def test_outage_id_fits_the_event_for_the_longest_camera_id() -> None:
    long_id = "c" * 64
    ident = outage_id(long_id, T0)
    assert 8 <= len(ident) <= 80 and ident != outage_id("d" * 64, T0)
    assert outage_id("cam-1", T0).startswith("offline-cam-1-")


# ---- wiring: the worker and the outbox ---------------------------------------------------------

def test_worker_reports_a_file_that_failed(tmp_path: Any) -> None:
    """A corrupt file goes FAILED: the worker's sink gets camera_offline opened, at once."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    cfg = parse_config({"site": {"name": "h"}, "cameras": [{"id": "bad", "url": str(bad), "grid_cell": "G3"}]})
    sink = ListSink()
    worker = PatrolWorker(cfg, analyzer_factory=camera_analyzer,
                          detector_loader=lambda _m, _s: ScriptedDetector.nothing(), sink=sink, realtime=False)
    worker.run(duration=20)
    assert worker.cameras["bad"].source.state is SourceState.FAILED
    (ev,) = sink.events
    assert (ev.type, ev.event, ev.seq, ev.camera_id, ev.grid_cell) == ("camera_offline", "opened", 1, "bad", "G3")
    assert ev.evidence.signals["source_failed"] == 1.0


def test_outbox_gets_the_incident_and_a_retained_health_message(db: Database) -> None:
    from alerts.outbox import OutboxSink

    outbox = OutboxSink(db, "city/v1")
    listed = ListSink()
    fan_out = FanOutSink(outbox, listed)
    health = CameraHealth("cam-1", "G1", offline_after_s=5)
    monitor = HealthMonitor([])
    monitor.cameras["cam-1"] = health
    for t, state in STREAM_0_10 + ticks(10, 20, R) + ticks(20, 22, S):
        check = monitor.check({"cam-1": (state, ERROR)}, T0 + t, t)
        publish_health(fan_out, check.events, check.reports)
    with db.transaction() as s:
        rows = [(r.topic, r.retain, json.loads(r.payload), r.incident_id, r.seq) for r in repo.pending_outbox(s)]
        inc = repo.get_incident(s, outage_id("cam-1", T0 + 10))
        cam_state = repo.camera_health(s)["cam-1"].state
        inc_state = inc.state
    assert [(ev.event, ev.seq) for ev in listed.events] == [("opened", 1), ("closed", 2)]
    assert [r.state for r in listed.health] == ["online", "offline", "online"]  # every sink behind the fan-out
    topics = [(topic, retain) for topic, retain, *_ in rows]
    assert topics == [("city/v1/health/cam-1", True),
                      ("city/v1/incidents/camera_offline/cam-1", False), ("city/v1/health/cam-1", True),
                      ("city/v1/incidents/camera_offline/cam-1", False), ("city/v1/health/cam-1", True)]
    states = [p["state"] for topic, _, p, *_ in rows if "/health/" in topic]
    assert states == ["online", "offline", "online"]
    offline = rows[2][2]
    assert offline["camera_id"] == "cam-1" and offline["at"] == T0 + 15.25
    assert offline["error"] and PASSWORD not in offline["error"] and "***" in offline["error"]
    assert (inc_state, cam_state) == ("closed", "online")
