"""The pipeline's metrics port: /healthz, /readyz, /metrics (stage histograms), 404 elsewhere; the
cameras' readiness rule; one registry for the metrics of several worker processes."""

from __future__ import annotations

import json
import pickle
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import generate_latest

from camera_config.schema import SiteConfig
from pipeline.health import HealthReport
from pipeline.metrics import STAGE_BUCKETS_S, CameraMetrics, MetricsBoard, forward_metrics, make_registry
from pipeline.probes import CameraReadiness, ProbeServer, check_readiness


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def camera_metrics(camera_id: str, **values: Any) -> CameraMetrics:
    m = CameraMetrics(camera_id)
    for key, value in values.items():
        setattr(m, key, value)
    return m


def test_stage_times_are_histograms_with_buckets_sum_and_count() -> None:
    m = CameraMetrics("cam-a")
    for seconds in (0.004, 0.004, 0.03, 0.7, 9.0):
        m.stage["infer"].add(seconds)
    m.stage["decode"].add(0.02, count=4)  # four packets, 5 ms each
    text = generate_latest(make_registry(lambda: [m])).decode()
    line = 'patrol_stage_seconds_bucket{{camera="cam-a",le="{}",stage="infer"}} {}'
    assert line.format("0.001", "0.0") in text
    assert line.format("0.005", "2.0") in text
    assert line.format("0.05", "3.0") in text
    assert line.format("1.0", "4.0") in text
    assert line.format("5.0", "4.0") in text
    assert line.format("+Inf", "5.0") in text
    assert 'patrol_stage_seconds_count{camera="cam-a",stage="infer"} 5.0' in text
    assert 'patrol_stage_seconds_sum{camera="cam-a",stage="infer"} 9.738' in text
    assert 'patrol_stage_seconds_bucket{camera="cam-a",le="0.005",stage="decode"} 4.0' in text
    assert "# TYPE patrol_stage_seconds histogram" in text
    buckets = [ln for ln in text.splitlines()
               if ln.startswith("patrol_stage_seconds_bucket") and 'stage="analyze"' in ln]
    assert len(buckets) == len(STAGE_BUCKETS_S) + 1  # every bucket, even of a stage never timed


def test_camera_metrics_travel_between_processes_and_one_board_exports_them_all() -> None:
    a = camera_metrics("a", packets=10, frames_analysed=3, last_frame_wall=100.0)
    a.stage["infer"].add(0.02)
    a.add_detections(["car", "car"])
    copy = pickle.loads(pickle.dumps(a.copy()))
    assert copy.packets == 10 and copy.detections == {"car": 2}
    assert copy.stage["infer"].buckets == a.stage["infer"].buckets
    copy.add_detections(["bus"])  # the lock came back on arrival
    assert a.detections == {"car": 2}
    board = MetricsBoard(["a", "b", "c"])
    board.post([copy], now=5.0)
    board.post([camera_metrics("b", packets=7)])
    text = generate_latest(make_registry(board.cameras)).decode()
    assert 'patrol_source_packets_total{camera="a"} 10.0' in text
    assert 'patrol_source_packets_total{camera="b"} 7.0' in text
    assert 'patrol_source_packets_total{camera="c"} 0.0' in text  # configured, nothing heard yet
    assert 'patrol_stage_seconds_bucket{camera="a",le="0.025",stage="infer"} 1.0' in text
    assert board.posted_at("a") == 5.0 and board.posted_at("c") is None


def test_forward_metrics_sends_copies_until_stopped() -> None:
    m = camera_metrics("a", packets=1)
    sent: list[list[CameraMetrics]] = []
    stop = threading.Event()
    thread = forward_metrics(lambda: [m], sent.append, stop.wait, every_s=0.05)
    while len(sent) < 3:
        stop.wait(0.05)
    m.packets = 99
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert sent[0][0] is not m and sent[0][0].packets in (1, 99)


SITE = SiteConfig.model_validate({"site": {"name": "probes"}, "cameras": [
    {"id": "a", "url": "a.mp4", "grid_cell": "G", "analysis_fps": 1, "watchdog": {"stall_timeout_s": 10}},
    {"id": "b", "url": "b.mp4", "grid_cell": "G", "analysis_fps": 0.5, "watchdog": {"stall_timeout_s": 10}}]})


@pytest.mark.parametrize(("a", "b", "b_health", "problem"), [
    # (a's last frame age, b's last frame age, b's last health report, what is wrong)
    (1.0, 1.0, None, None),
    (11.9, 13.9, None, None),  # within stall timeout + two analysis intervals (12 s and 14 s)
    (12.1, 1.0, None, "camera a: no frame for 12 s (streaming), not reported offline"),
    (1.0, None, None, "camera b: no frame yet (streaming)"),
    (1.0, None, "offline", None),  # a dead camera reported offline does not make the node unready
    (1.0, 100.0, "offline", None),
    (1.0, 100.0, "online", "camera b: no frame for 100 s (streaming), not reported offline"),
])
def test_camera_readiness(a: float | None, b: float | None, b_health: str | None, problem: str | None) -> None:
    now = 1_000.0
    metrics = [camera_metrics(cid, state="streaming", last_frame_wall=None if age is None else now - age)
               for cid, age in (("a", a), ("b", b))]
    probe = CameraReadiness(SITE.cameras, lambda: metrics, clock=lambda: now)
    if b_health:
        probe.report_health([HealthReport("b", b_health, now)])  # type: ignore[arg-type]
    assert probe() == problem


def test_readiness_of_several_probes_and_a_probe_that_raises() -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    ok = check_readiness({"database": lambda: None, "broker": lambda: None})
    assert ok.ready and ok.checks == {"database": "ok", "broker": "ok"}
    bad = check_readiness({"database": lambda: None, "broker": lambda: "broker 127.0.0.1:1 not connected",
                           "cameras": broken})
    assert not bad.ready
    assert bad.checks == {"database": "ok", "broker": "broker 127.0.0.1:1 not connected",
                          "cameras": "probe failed: boom (RuntimeError)"}


def test_probe_server_paths() -> None:
    m = camera_metrics("cam-a", packets=5)
    m.stage["analyze"].add(0.003)
    state = {"broker": "broker 127.0.0.1:1883 not connected"}
    server = ProbeServer(0, make_registry(lambda: [m]), {"broker": lambda: state["broker"]}, host="127.0.0.1")
    with server:
        base = f"http://127.0.0.1:{server.port}"
        assert get(f"{base}/healthz")[0] == 200 and json.loads(get(f"{base}/healthz")[2]) == {"status": "alive"}
        status, ctype, body = get(f"{base}/readyz")
        assert status == 503 and ctype == "application/json"
        assert json.loads(body) == {"ready": False, "checks": {"broker": "broker 127.0.0.1:1883 not connected"}}
        state["broker"] = None  # type: ignore[assignment]
        status, _, body = get(f"{base}/readyz")
        assert status == 200 and json.loads(body) == {"ready": True, "checks": {"broker": "ok"}}
        status, ctype, body = get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert 'patrol_stage_seconds_bucket{camera="cam-a",le="0.005",stage="analyze"} 1.0' in body
        for path in ("/", "/metricsx", "/favicon.ico", "/readyz/extra"):
            status, _, body = get(base + path)
            assert status == 404, path
            assert json.loads(body)["detail"] == "not found"
        assert get(f"{base}/metrics?x=1")[0] == 200
        assert get(f"{base}/healthz", method="HEAD")[0] == 200
        assert get(f"{base}/healthz", method="POST")[0] == 405


def test_a_taken_port_is_a_clear_error() -> None:
    from pipeline.probes import ProbeServerError

    first = ProbeServer(0, make_registry(list), host="127.0.0.1").start()
    try:
        with pytest.raises(ProbeServerError, match=f"metrics port 127.0.0.1:{first.port}: cannot listen"):
            ProbeServer(first.port, make_registry(list), host="127.0.0.1")
    finally:
        first.stop()
