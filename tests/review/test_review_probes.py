"""The review page's /healthz and /readyz: public, no session look-up, 503 naming the database or
the broker when either goes away (a real mosquitto, stopped; a PostgreSQL database that refuses
connections)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from camera_config.schema import SiteConfig
from review.app import create_app
from review.server import review_services


def wait_ready(client: TestClient, status: int, check: str | None = None, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get("/readyz")
        body: dict[str, Any] = r.json()
        if r.status_code == status and (check is None or body["checks"][check] != "ok"):
            return body
        assert time.monotonic() < deadline, (status, check, r.status_code, body)
        time.sleep(0.2)


def test_healthz_and_readyz_follow_the_database_and_the_broker(mosquitto: Any, postgres_server: Any,
                                                             tmp_path: Path) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    config = SiteConfig.model_validate({
        "site": {"name": "review-health"},
        "cameras": [{"id": "a", "url": "a.mp4", "grid_cell": "G"}],
        "database": {"url": postgres_server.url.rsplit("/", 1)[0] + "/" + name},
        "evidence": {"dir": str(tmp_path / "evidence")},
        "review": {"secret_file": str(tmp_path / "secret")},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": "review-health"}})
    try:
        with review_services(config) as services:
            client = TestClient(create_app(services.ctx), follow_redirects=False)
            r = client.get("/healthz")
            assert r.status_code == 200 and r.json() == {"status": "alive"}
            assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
            assert client.get("/queue").status_code == 303  # the rest still needs a login
            body = wait_ready(client, 200)
            assert body == {"ready": True, "checks": {"database": "ok", "broker": "ok"}}

            mosquitto.stop()
            body = wait_ready(client, 503, "broker")
            assert body["checks"]["broker"].startswith(f"broker 127.0.0.1:{mosquitto.port} not connected")
            assert body["checks"]["database"] == "ok"
            mosquitto.start()
            wait_ready(client, 200, timeout_s=60)

            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                             {"n": name})
            body = wait_ready(client, 503, "database")
            assert "unreachable" in body["checks"]["database"]
            assert client.get("/healthz").status_code == 200  # no session look-up: alive without a database
            with admin.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            wait_ready(client, 200)
    finally:
        admin.dispose()
