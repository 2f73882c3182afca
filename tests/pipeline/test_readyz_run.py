"""``patrol run --metrics-port``: /readyz follows the database, the broker and the cameras.

A real ``patrol run`` (the RTSP server looping the street clip, one dead camera, a real mosquitto and
a PostgreSQL database): ready once the live camera streams and the dead one is reported offline;
503 naming the broker while mosquitto is stopped and naming the database while PostgreSQL refuses
connections; ready again after each comes back. /healthz stays 200 and unknown paths are 404.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from run_helpers import closed_port

REPO = Path(__file__).resolve().parents[2]


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def wait_for(what: str, check: Callable[[], tuple[bool, Any]], timeout_s: float) -> tuple[Any, float]:
    """Poll ``check`` until it says True; (its last value, seconds it took)."""
    t0 = time.monotonic()
    while True:
        ok, value = check()
        if ok:
            return value, time.monotonic() - t0
        assert time.monotonic() - t0 < timeout_s, f"{what}: not within {timeout_s} s; last {value}"
        time.sleep(0.25)


@pytest.mark.integration
@pytest.mark.slow
def test_readyz_follows_broker_database_and_cameras(rtsp_server: Any, asset_path: Any, mosquitto: Any,
                                                    postgres_server: Any, tmp_path: Path) -> None:
    srv = rtsp_server({"street": asset_path("vehicle_counting_input_video")})
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    port = closed_port()
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({
        "site": {"name": "readyz"},
        "database": {"url": postgres_server.url.rsplit("/", 1)[0] + "/" + name},
        "evidence": {"dir": str(tmp_path / "evidence")},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": "readyz"},
        "cameras": [
            {"id": "street", "url": srv.url("street"), "grid_cell": "G1", "analysis_fps": 1,
             "watchdog": {"open_timeout_s": 15}},
            {"id": "gate", "url": f"rtsp://127.0.0.1:{closed_port()}/gate", "grid_cell": "G2",
             "watchdog": {"offline_after_s": 2, "open_timeout_s": 1, "backoff_initial_s": 0.5}}]}))
    proc = subprocess.Popen([sys.executable, "-m", "patrol", "run", "--config", str(cfg), "--no-evidence",
                             "--metrics-port", str(port), "--pipeline-id", "readyz-1"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"

    def readyz(want: int, check: str | None = None) -> Callable[[], tuple[bool, Any]]:
        def probe() -> tuple[bool, Any]:
            try:
                status, body = get(f"{base}/readyz")
            except (urllib.error.URLError, ConnectionError) as exc:
                return False, repr(exc)
            return status == want and (check is None or body["checks"][check] != "ok"), (status, body)
        return probe

    try:
        (_, body), took = wait_for("ready", readyz(200), 120)
        assert body == {"ready": True, "checks": {"database": "ok", "broker": "ok", "outbox": "ok",
                                                  "cameras": "ok"}}
        print(f"\nready {took:.1f} s after the first answer")
        assert get(f"{base}/healthz") == (200, {"status": "alive"})
        assert get(f"{base}/nope")[0] == 404

        mosquitto.stop()
        (_, body), took = wait_for("not ready without the broker", readyz(503, "broker"), 30)
        assert body["ready"] is False and "not connected" in body["checks"]["broker"]
        assert body["checks"]["database"] == "ok"
        assert get(f"{base}/healthz")[0] == 200  # alive all the same: nothing to restart
        print(f"broker stopped: 503 after {took:.1f} s: {body['checks']['broker']}")
        mosquitto.start()
        _, took = wait_for("ready with the broker back", readyz(200), 60)
        print(f"broker back: ready after {took:.1f} s")

        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                         {"n": name})
        (_, body), took = wait_for("not ready without the database", readyz(503, "database"), 30)
        assert "unreachable" in body["checks"]["database"] and name in body["checks"]["database"]
        print(f"database refused: 503 after {took:.1f} s: {body['checks']['database']}")
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        _, took = wait_for("ready with the database back", readyz(200), 60)
        print(f"database back: ready after {took:.1f} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        admin.dispose()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
