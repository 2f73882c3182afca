"""Evidence retention on a schedule inside the long-running services, no outside cron.

The scheduler runs the existing retention every ``interval_s`` on its own thread; "now" comes from
a fake clock, so evidence "40 days old" is old without waiting 40 days. Against the real database
(SQLite and PostgreSQL): expired evidence of a closed incident goes, that of an open ticket stays.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from camera_config.schema import SiteConfig
from evidence.retention import RetentionPolicy, RetentionScheduler
from evidence.store import EvidenceStore
from patrol.services import evidence_retention
from storage import repository as repo
from storage.db import Database

NOW = 1_800_000_000.0
DAY = 86_400.0
REPO = Path(__file__).resolve().parents[2]


def put_evidence(store: EvidenceStore, incident_id: str, opened_at: float, size: int = 1000) -> None:
    folder = store.incident_dir(incident_id)
    folder.mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(b"\0" * size)
    (folder / "manifest.json").write_text(json.dumps({"times": {"opened_at": opened_at}}))


def wait_until(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def test_the_scheduler_deletes_what_expires_while_it_runs(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    clock = {"now": NOW}
    put_evidence(store, "inc-fresh-0001", NOW - 1 * DAY)
    put_evidence(store, "inc-kept-00002", NOW - 90 * DAY)
    scheduler = RetentionScheduler(store, RetentionPolicy(30, 1000), lambda ids: {"inc-kept-00002"} & set(ids),
                                   interval_s=0.1, clock=lambda: clock["now"])
    with scheduler:
        wait_until(lambda: scheduler.runs >= 2)
        assert {e.incident_id for e in store.entries()} == {"inc-fresh-0001", "inc-kept-00002"}
        clock["now"] = NOW + 40 * DAY  # the fresh one is now 41 days old
        wait_until(lambda: not store.incident_dir("inc-fresh-0001").exists())
    assert [e.incident_id for e in store.entries()] == ["inc-kept-00002"]  # its ticket is open
    assert scheduler.deleted == 1 and scheduler.failures == 0
    assert scheduler._thread is not None and not scheduler._thread.is_alive()


def test_a_failing_run_is_logged_and_the_next_one_comes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = EvidenceStore(tmp_path / "evidence")
    put_evidence(store, "inc-old-000001", NOW - 90 * DAY)
    calls = {"n": 0}

    def keep(ids: Any) -> set[str]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database away")
        return set()

    with caplog.at_level("ERROR", logger="evidence.retention"), \
            RetentionScheduler(store, RetentionPolicy(30, 1000), keep, interval_s=0.1, clock=lambda: NOW) as sched:
        wait_until(lambda: not store.incident_dir("inc-old-000001").exists())
    assert sched.failures == 1 and sched.deleted == 1
    assert any("scheduled evidence retention failed" in r.getMessage() for r in caplog.records)


def test_the_first_run_waits_one_interval() -> None:
    store_runs: list[float] = []

    class Store:
        def entries(self) -> list[Any]:
            store_runs.append(time.monotonic())
            return []

    t0 = time.monotonic()
    with RetentionScheduler(Store(), RetentionPolicy(30, 1000), lambda ids: set(), interval_s=0.5):  # type: ignore[arg-type]
        wait_until(lambda: len(store_runs) >= 1)
    assert store_runs[0] - t0 >= 0.45


@pytest.mark.parametrize("interval", [0, -1, float("nan")])
def test_a_bad_interval_is_refused(tmp_path: Path, interval: float) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        RetentionScheduler(EvidenceStore(tmp_path), RetentionPolicy(30, 1000), lambda ids: set(), interval)


def site(tmp_path: Path, db_url: str, interval_s: float) -> dict[str, Any]:
    return {"site": {"name": "retention"}, "cameras": [{"id": "cam-1", "url": "x.mp4", "grid_cell": "G-01"}],
            "database": {"url": db_url},
            "evidence": {"dir": str(tmp_path / "evidence"),
                         "retention": {"max_age_days": 30, "interval_s": interval_s}}}


def test_the_services_schedule_keeps_open_tickets_against_the_database(db: Database, tmp_path: Path,
                                                                      make_incident_event: Any) -> None:
    config = SiteConfig.model_validate(site(tmp_path, db.url, 0.2))
    store = EvidenceStore(config.evidence.dir)
    old = NOW - 60 * DAY
    with db.transaction() as s:
        for incident_id in ("inc-closed-0001", "inc-ticket-0002"):
            opened = make_incident_event(incident_id, 1, "opened", started_at=old, event_at=old)
            repo.apply_incident_event(s, opened)
            repo.apply_incident_event(s, make_incident_event(incident_id, 2, "closed", started_at=old,
                                                             event_at=old + 60))
            put_evidence(store, incident_id, old)
        ticket = repo.add_ticket(s, opened, "traffic_police", NOW, "dispatched", actor="test", reason="test", at=old)
        repo.get_incident(s, "inc-ticket-0002").ticket_id = ticket.id
    with evidence_retention(config, db, clock=lambda: NOW) as scheduler:
        assert scheduler is not None and scheduler.interval_s == 0.2
        wait_until(lambda: not store.incident_dir("inc-closed-0001").exists())
        wait_until(lambda: scheduler.runs >= 2)
    assert [e.incident_id for e in store.entries()] == ["inc-ticket-0002"]
    assert scheduler.failures == 0


def test_interval_zero_turns_the_schedule_off(tmp_path: Path) -> None:
    config = SiteConfig.model_validate(site(tmp_path, "sqlite://", 0))
    with evidence_retention(config, object()) as scheduler:
        assert scheduler is None


@pytest.mark.integration
def test_the_ticket_service_deletes_expired_evidence_by_itself(tmp_path: Path) -> None:
    """``patrol tickets serve`` with a 0.5 s retention interval and nothing else to do (its broker is
    away): evidence 40 days old is gone within seconds, without any cron or retention command."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg_dict = site(tmp_path, f"sqlite:///{tmp_path / 'patrol.db'}", 0.5)
    cfg_dict["mqtt"] = {"host": "127.0.0.1", "port": port}
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(cfg_dict), encoding="utf-8")
    store = EvidenceStore(tmp_path / "evidence")
    put_evidence(store, "inc-expired-01", time.time() - 40 * DAY)
    put_evidence(store, "inc-recent-002", time.time() - 1 * DAY)
    proc = subprocess.Popen([sys.executable, "-m", "patrol", "tickets", "serve", "--config", str(cfg)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: not store.incident_dir("inc-expired-01").exists() or proc.poll() is not None, 90)
        assert proc.poll() is None
        assert store.incident_dir("inc-recent-002").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "evidence deleted by retention" in err and "inc-expired-01" in err
