"""Worker shards (pipeline/shards.py): a site's cameras over several processes, one outbox.

The ``*_entry`` functions below run in spawned worker processes: the child imports this module by
name (pytest put its folder on ``sys.path``, which a spawned child inherits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from run_helpers import closed_port, sigterm_once_streaming

from camera_config.schema import SiteConfig
from patrol.cli import main
from pipeline.shards import ShardedRun, ShardError, auto_processes, partition

REPO = Path(__file__).resolve().parents[2]
ENTRY = f"{__name__}:{{}}"


def site(*camera_ids: str) -> SiteConfig:
    return SiteConfig.model_validate({"site": {"name": "shards"}, "cameras": [
        {"id": cid, "url": f"/nonexistent/{cid}.mp4", "grid_cell": "G1"} for cid in camera_ids]})


def rows(config: SiteConfig) -> list[dict[str, Any]]:
    return [{"camera_id": c.id, "state": "stopped"} for c in config.cameras]


# -- entries (run in the worker processes) ----------------------------------------------------------

def counting_entry(config: SiteConfig, outlet: Any, stop: Any, options: dict[str, Any]) -> None:
    """Sends a numbered run of messages per camera, then its summary, and ends by itself."""
    outlet.send("ready")
    for cam in config.cameras:
        for i in range(options["count"]):
            outlet.send("events", (cam.id, i))
    outlet.send("summary", rows(config))


def until_stopped_entry(config: SiteConfig, outlet: Any, stop: Any, options: dict[str, Any]) -> None:
    outlet.send("ready")
    stop.wait()
    outlet.send("summary", rows(config))


def broken_model_entry(config: SiteConfig, outlet: Any, stop: Any, options: dict[str, Any]) -> None:
    if "b" in [c.id for c in config.cameras]:
        raise RuntimeError("model 'nope': cannot load: no such file")
    until_stopped_entry(config, outlet, stop, options)


def dies_once_entry(config: SiteConfig, outlet: Any, stop: Any, options: dict[str, Any]) -> None:
    """The shard with camera ``b`` is killed (no word, no flush) on its first start."""
    outlet.send("ready")
    marker = Path(options["dir"]) / "died"
    if "b" in [c.id for c in config.cameras] and not marker.exists():
        marker.write_text("once")
        os._exit(3)
    outlet.send("summary", rows(config))
    stop.wait()


def always_dies_entry(config: SiteConfig, outlet: Any, stop: Any, options: dict[str, Any]) -> None:
    outlet.send("ready")
    os._exit(3)


# -- tests ----------------------------------------------------------------------------------------

def test_cameras_are_dealt_round_robin_into_non_empty_shards() -> None:
    assert partition(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert partition(["a", "b"], 5) == [["a"], ["b"]]
    assert partition(["a", "b", "c"], 1) == [["a", "b", "c"]]


@pytest.mark.parametrize(("cameras", "cores", "expected"),
                         [(1, 2, 1), (16, 2, 1), (17, 2, 2), (40, 2, 3), (48, 2, 3), (1000, 2, 8), (40, 16, 3)])
def test_auto_processes_one_per_sixteen_cameras_at_most_four_per_core(cameras: int, cores: int,
                                                                     expected: int) -> None:
    assert auto_processes(cameras, cores) == expected


def test_each_shards_messages_arrive_in_order_and_summaries_in_config_order() -> None:
    config = site("a", "b", "c", "d", "e")
    got: dict[int, list[tuple[str, int]]] = {}

    def on_message(shard: int, kind: str, payload: Any) -> None:
        if kind == "events":
            got.setdefault(shard, []).append(payload)

    run = ShardedRun(config, 2, ENTRY.format("counting_entry"), on_message, options={"count": 200})
    run.run(duration=60)  # ends when both shards have finished, long before the duration
    assert run.stopped_at is not None and run.started_at is not None
    assert run.stopped_at - run.started_at < 50
    assert got[0] == [(cam, i) for cam in ("a", "c", "e") for i in range(200)]
    assert got[1] == [(cam, i) for cam in ("b", "d") for i in range(200)]
    assert [r["camera_id"] for r in run.summary()] == ["a", "b", "c", "d", "e"]
    assert all(not s.process.is_alive() and s.process.exitcode == 0 for s in run.shards)


def test_request_stop_reaches_every_shard() -> None:
    config = site("a", "b", "c")
    run = ShardedRun(config, 3, ENTRY.format("until_stopped_entry"), lambda *_: None)
    timer = threading.Timer(3.0, run.request_stop)
    timer.start()
    t0 = time.monotonic()
    run.run()
    assert 3.0 <= time.monotonic() - t0 < 20
    assert [r["camera_id"] for r in run.summary()] == ["a", "b", "c"]


def test_a_shard_that_cannot_start_stops_the_run_naming_its_cameras() -> None:
    run = ShardedRun(site("a", "b", "c", "d"), 2, ENTRY.format("broken_model_entry"), lambda *_: None)
    t0 = time.monotonic()
    with pytest.raises(ShardError, match=r"shard 1 \(cameras b, d\) could not start: model 'nope': cannot load"):
        run.run(duration=60)
    assert time.monotonic() - t0 < 30  # the healthy shard was stopped too, not left to the duration
    assert all(not s.process.is_alive() for s in run.shards)


def test_a_shard_that_dies_is_started_again_and_the_others_keep_running(tmp_path: Path) -> None:
    kinds: list[tuple[int, str]] = []
    run = ShardedRun(site("a", "b"), 2, ENTRY.format("dies_once_entry"),
                     lambda shard, kind, _payload: kinds.append((shard, kind)),
                     options={"dir": str(tmp_path)}, restart_backoff_s=(0.2, 1.0))
    timer = threading.Timer(8.0, run.request_stop)
    timer.start()
    run.run()
    a, b = run.shards
    assert (a.starts, b.starts) == (1, 2)
    assert [k for s, k in kinds if s == 1].count("ready") == 2  # the second start came up
    assert [r["camera_id"] for r in run.summary()] == ["a", "b"]


def test_a_shard_that_keeps_dying_is_restarted_ever_more_slowly(caplog: pytest.LogCaptureFixture) -> None:
    run = ShardedRun(site("a"), 1, ENTRY.format("always_dies_entry"), lambda *_: None,
                     restart_backoff_s=(0.2, 5.0))
    timer = threading.Timer(6.0, run.request_stop)
    timer.start()
    with caplog.at_level("WARNING", logger="patrol.shards"):
        run.run()
    waits = [r.getMessage().rsplit(" in ", 1)[1] for r in caplog.records if "starting again" in r.getMessage()]
    assert waits[:3] == ["0.2 s", "0.4 s", "0.8 s"], waits
    assert run.shards[0].starts == len(waits) or run.shards[0].starts == len(waits) + 1


def write_site(path: Path, cameras: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({
        "site": {"name": "shards", "timezone": "UTC"},
        "database": {"url": f"sqlite:///{path.parent / 'patrol.db'}"},
        "evidence": {"dir": str(path.parent / "evidence"), "pre_roll_s": 2, "post_roll_s": 2},
        "mqtt": {"host": "127.0.0.1", "port": closed_port()},  # broker down: everything waits in the outbox
        "cameras": cameras}), encoding="utf-8")
    return path


KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 8,
        "polygon": [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}


@pytest.mark.integration
@pytest.mark.slow
def test_patrol_run_over_two_processes_keeps_one_outbox(asset_path: Any, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Two cameras on the parked-car clip and one dead camera, over two worker processes: every
    incident, its evidence references and the dead camera's health report end in the one database."""
    clip = str(asset_path("vehicle_counting_input_video"))
    cfg = write_site(tmp_path / "site.yaml", [
        {"id": "street-a", "url": clip, "grid_cell": "JD-0101", "analysis_fps": 2, "zones": [KERB]},
        {"id": "street-b", "url": clip, "grid_cell": "JD-0102", "analysis_fps": 2, "zones": [KERB]},
        {"id": "gate", "url": f"rtsp://127.0.0.1:{closed_port()}/gate", "grid_cell": "JD-0103",
         "watchdog": {"offline_after_s": 2, "open_timeout_s": 1, "backoff_initial_s": 0.5}}])
    summary = tmp_path / "summary.json"
    code = main(["run", "--config", str(cfg), "--processes", "2", "--duration", "16", "--summary-json",
                 str(summary), "--pipeline-id", "shards-1"])
    assert code == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    opened = {(e["type"], e["camera_id"]) for e in printed if e["event"] == "opened"}
    assert opened == {("illegal_parking", "street-a"), ("illegal_parking", "street-b"), ("camera_offline", "gate")}
    assert [r["camera_id"] for r in json.loads(summary.read_text())["cameras"]] == ["street-a", "street-b", "gate"]

    from sqlalchemy import select

    from storage import repository as repo
    from storage.db import open_database
    from storage.models import OutboxRow

    db = open_database(f"sqlite:///{tmp_path / 'patrol.db'}")
    try:
        with db.transaction() as s:
            incidents = {e["incident_id"]: e["camera_id"] for e in printed if e["event"] == "opened"}
            for incident_id, camera in incidents.items():
                assert repo.get_incident(s, incident_id).camera_id == camera
            for incident_id, camera in incidents.items():
                if camera != "gate":
                    kinds = {r.kind for r in repo.evidence_of(s, incident_id)}
                    assert {"clip", "snapshot", "manifest"} <= kinds, (camera, kinds)
            topics = {r.topic: r for r in s.scalars(select(OutboxRow)).all()}
            health = topics["patrol/v1/health/gate"]
            assert health.retain and json.loads(health.payload)["state"] == "offline"
            assert repo.outbox_counts(s) == {"pending": len(topics)}  # the broker was down: all kept
    finally:
        db.dispose()


def test_sigterm_stops_every_worker_process_with_a_summary(asset_path: Any, tmp_path: Path) -> None:
    clip = str(asset_path("vehicle_counting_input_video"))
    cfg = write_site(tmp_path / "site.yaml", [
        {"id": f"street-{i}", "url": clip, "grid_cell": "G1", "analysis_fps": 1} for i in range(2)])
    port = closed_port()

    def check_metrics_and_list_workers(proc: subprocess.Popen[str]) -> list[str]:
        # one endpoint for both worker processes, in the parent: every camera's counters, and they grow
        deadline = time.monotonic() + 20
        while True:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            packets = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("patrol_source_packets_total{")]
            if (len(packets) == 2 and min(packets) > 0) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for shard in range(2):
            assert f'patrol_source_packets_total{{camera="street-{shard}"}}' in text
            assert f'patrol_stage_seconds_bucket{{camera="street-{shard}",le="+Inf",stage="decode"}}' in text
        assert len(packets) == 2 and min(packets) > 0, text[:2000]
        assert "patrol_outbox_ready " in text  # the parent's one outbox, on the same endpoint
        with pytest.raises(urllib.error.URLError):  # the shards serve nothing of their own
            urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/metrics", timeout=5)
        # readiness in the parent: both shards' cameras fresh, the broker (a closed port) not connected
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert answer.value.code == 503
        checks = json.loads(answer.value.read())["checks"]
        assert checks["cameras"] == "ok" and checks["database"] == "ok" and "not connected" in checks["broker"]
        return Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()

    proc, out, err, children = sigterm_once_streaming(
        [sys.executable, "-m", "patrol", "run", "--config", str(cfg), "--processes", "2", "--summary",
         "--no-evidence", "--metrics-port", str(port)], cameras=2, while_running=check_metrics_and_list_workers)
    assert proc.returncode == 0, err[-2000:]
    assert err.count("worker stopped") == 2
    assert "camera street-0: stopped" in out and "camera street-1: stopped" in out
    assert len(children) >= 2
    deadline = time.monotonic() + 10  # the resource tracker notices its parent's end a moment later
    while any(running(int(pid)) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if running(int(pid))] == []


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
