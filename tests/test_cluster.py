"""``patrol run --cluster``: a site of 12 cameras over a Ray cluster of three network namespaces.

A head (no CPUs: it runs the driver, which keeps the one outbox publisher) and two worker nodes of
2 CPUs each, every node a ``ray start --block`` process in a namespace of its own, joined by a bridge
(scripts/netns_cluster.py). The project's RTSP server, mosquitto and PostgreSQL listen on the bridge
address. The cameras stream the real street clip with a no-parking zone over the kerb where a real
car stands; the real detector runs in the groups. Then one worker node is stopped by its PID: its
camera group streams again on the other node within a bounded time (printed), and every event the
groups committed reaches the one ticket database exactly once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
CLIP = "vehicle_counting_input_video"  # 640 x 352, a car standing at the right-hand kerb
KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 4, "occlusion_grace_s": 6, "close_grace_s": 6,
        "polygon": [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}
CAMERAS = 12
FAILOVER_LIMIT_S = 150.0


def _netns() -> Any:
    path = REPO / "scripts" / "netns_cluster.py"
    spec = importlib.util.spec_from_file_location("patrol_netns_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["patrol_netns_cluster"] = module
    spec.loader.exec_module(module)
    return module


def _wait(what: str, cond: Any, timeout: float, every: float = 1.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {"groups": []}


def _cameras(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["camera_id"]: {**c, "node_ip": g["node_ip"], "started_at": g["started_at"]}
            for g in status["groups"] for c in g["cameras"]}


@pytest.fixture
def netns_cluster():  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray not installed (the 'cluster' extra: pip install '.[cluster]')")
    netns = _netns()
    why = netns.available()
    if why:
        pytest.skip(f"network namespaces unavailable: {why}")
    cluster = netns.NetnsCluster(workers=[2, 2], head_cpus=0, env={"PYTHONPATH": str(REPO)})
    cluster.network_up()
    try:
        yield cluster
    finally:
        cluster.close()


def test_cluster_moves_a_dead_nodes_cameras_and_delivers_every_event_once(
        netns_cluster: Any, rtsp_server: Any, asset_path: Any, tmp_path: Path) -> None:
    from camera_config.schema import MqttConfig, TicketsConfig
    from storage import repository as repo
    from storage.db import open_database
    from storage.models import InboxRow, OutboxRow
    from tests.conftest import _services
    from tickets.service import TicketService

    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed")
    services = _services()
    bridge = netns_cluster.bridge_ip
    subnet = f"{bridge.rsplit('.', 1)[0]}.0/24"
    clip = asset_path(CLIP)
    srv = rtsp_server({f"cam{i:02d}": clip for i in range(CAMERAS)}, host=bridge)
    with services.Postgres(also_listen=((bridge, subnet),)) as pg, \
            services.Mosquitto(also_listen=(bridge,)) as broker:
        site = {
            "site": {"name": "cluster-test"},
            "mqtt": {"host": bridge, "port": broker.port, "client_id": "ct"},
            "database": {"url": pg.url_at(bridge)},
            "cameras": [{"id": f"cam{i:02d}", "url": srv.url(f"cam{i:02d}"), "grid_cell": f"G-{i:02d}",
                         "analysis_fps": 1, "zones": [KERB]} for i in range(CAMERAS)],
        }
        config = tmp_path / "site.yaml"
        config.write_text(yaml.safe_dump(site, sort_keys=False))
        db = open_database(pg.url)  # migrated here, before any node writes
        svc = TicketService(db, MqttConfig(port=broker.port, client_id="ct"), TicketsConfig(), client_id="ct-tickets")
        stop_svc = threading.Event()
        svc_thread = threading.Thread(target=svc.run, args=(stop_svc,), daemon=True)
        svc_thread.start()

        t0 = time.monotonic()
        netns_cluster.start_nodes()
        print(f"cluster of {len(netns_cluster.nodes)} nodes up in {time.monotonic() - t0:.0f} s")
        status_path = tmp_path / "cluster-status.json"
        driver_log = (tmp_path / "driver.log").open("wb")
        driver = netns_cluster.run_in(
            netns_cluster.head,
            [sys.executable, "-m", "patrol", "run", "--config", str(config), "--cluster", netns_cluster.head.address,
             "--cluster-status", str(status_path), "--no-evidence", "--pipeline-id", "ct",
             "--spill-dir", str(tmp_path / "spill")],
            cwd=str(REPO), stdout=driver_log, stderr=subprocess.STDOUT, env={"PYTHONPATH": str(REPO)})
        try:
            def all_streaming(after: float = 0.0, avoid: str | None = None) -> bool:
                cams = _cameras(_status(status_path))
                return len(cams) == CAMERAS and all(
                    c["state"] == "streaming" and c["frames_analysed"] >= 2 and c["started_at"] >= after
                    and c["node_ip"] != avoid for c in cams.values())

            try:
                _wait("all 12 cameras streaming on the cluster", all_streaming, 300)
                before = _status(status_path)
                nodes_used = {g["node_ip"] for g in before["groups"]}
                print(f"groups: {[(g['group'], g['node_ip'], len(g['cameras'])) for g in before['groups']]}")
                assert len(before["groups"]) >= 2 and len(nodes_used) == 2, "the groups should spread over both workers"
                victim = next(n for n in netns_cluster.worker_nodes if n.ip in nodes_used)
                moved = [c for c, v in _cameras(before).items() if v["node_ip"] == victim.ip]
                time.sleep(8)  # let incidents open on the victim too
                killed = time.time()
                netns_cluster.stop_node(victim)
                t_kill = time.monotonic()
                back = _wait(f"cameras {moved} streaming again off {victim.ip}",
                             lambda: all_streaming(avoid=victim.ip) and all(
                                 _cameras(_status(status_path))[c]["started_at"] > killed for c in moved),
                             FAILOVER_LIMIT_S)
            except AssertionError:  # what the driver, the cluster and the RTSP server last said
                driver_log.flush()
                print("driver log tail:\n" + (tmp_path / "driver.log").read_text(errors="replace")[-4000:])
                print("status:", json.dumps(_status(status_path))[:3000])
                print("RTSP server log tail:\n" + Path(srv.log_path).read_text(errors="replace")[-3000:])
                raise
            print(f"node {victim.name} ({victim.ip}) stopped: its {len(moved)} camera(s) streamed again on "
                  f"the other node after {back - t_kill:.1f} s")
            time.sleep(10)
            driver.send_signal(signal.SIGTERM)
            assert driver.wait(180) == 0, (tmp_path / "driver.log").read_text()[-3000:]
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
            driver_log.close()
        after = _status(status_path)
        assert sum(g["restarts"] for g in after["groups"]) >= 1

        def delivery() -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
            with db.transaction() as s:
                sent = {(r.incident_id, r.seq) for r in s.query(OutboxRow).filter(OutboxRow.incident_id.isnot(None))}
                got = {(r.incident_id, r.seq) for r in s.query(InboxRow).filter(InboxRow.applied_at.isnot(None))}
            return sent, got

        _wait("every committed event applied by the ticket service", lambda: delivery()[0] <= delivery()[1], 60)
        stop_svc.set()
        svc_thread.join(15)
        sent, got = delivery()
        with db.transaction() as s:
            tickets = repo.list_tickets(s)
            pending = s.query(OutboxRow).filter(OutboxRow.state != "sent").count()
            inbox_rows = s.query(InboxRow).count()
        incidents = {i for i, _ in sent}
        print(f"{len(sent)} event(s) of {len(incidents)} incident(s) committed by the groups, {len(got)} applied, "
              f"{len(tickets)} ticket(s); outbox rows not sent: {pending}")
        assert incidents, "no incident on 12 cameras of a parked car"
        assert sent == got and inbox_rows == len(got)  # each event once (the inbox key is incident id + seq)
        assert len({t.incident_id for t in tickets}) == len(tickets)  # no incident opened two tickets
        assert pending == 0
        db.dispose()
        assert os.path.exists(status_path)
