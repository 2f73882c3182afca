"""``patrol run`` reconciles its incidents at a stop and after a crash, and never loses events quietly
(issue 14 items 2 and 3): a real clip, the real detector and rules, a real mosquitto and database.

The street clip has a silver car standing at the right-hand kerb for the whole clip (see
tests/pipeline/test_run_publish.py); with an 8 s limit the parking rule fires about 8 s in.

* SIGTERM once the incident is open: it is closed (``reason: pipeline_stopped``); nothing open (a
  dead camera's camera_offline incident too).
* SIGKILL once it is open, then a restart on the same clip: the car is found again at the same
  place and the same incident continues (an ``updated`` event with the next seq): one incident for
  the parked car, not two.
* The database made immutable mid-run with nowhere to spill: the run stops with exit status 3 and
  one clear line; the event is on stdout (in one process, and over worker processes).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from storage import repository as repo
from storage.db import open_database
from storage.models import Incident

REPO = Path(__file__).resolve().parents[2]
KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 8,
        "polygon": [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Run:
    """A ``patrol run`` subprocess whose stdout events and stderr lines are collected as they come."""

    def __init__(self, cfg: Path, *extra: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "patrol", "run", "--config", str(cfg),
                                      "--pipeline-id", "durable-1", *extra], cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, out: bool) -> None:
        for line in stream:
            if out and line.startswith("{"):
                self.events.append(json.loads(line))
            elif not out:
                self.stderr.append(line)

    def wait_for(self, what: str, cond: Callable[[], bool], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{what}: not seen (rc {self.proc.poll()}); stderr:\n{''.join(self.stderr[-30:])}")
            time.sleep(0.1)

    def opened(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "opened" and e["type"] == "illegal_parking"]

    def stop(self, sig: int, timeout: float = 90.0) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(10)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _site(tmp_path: Path, db_url: str, port: int, clip: Path) -> Path:
    site = {
        "site": {"name": "durability", "timezone": "UTC"},
        "database": {"url": db_url},
        "evidence": {"dir": str(tmp_path / "evidence"), "pre_roll_s": 1, "post_roll_s": 1},
        "mqtt": {"host": "127.0.0.1", "port": port},
        "cameras": [{"id": "street", "url": str(clip), "grid_cell": "JD-0101", "analysis_fps": 2,
                     "zones": [KERB]}],
    }
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(site), encoding="utf-8")
    return cfg


def _incidents(db_url: str) -> list[tuple[str, str, list[tuple[int, str, str | None]]]]:
    """(id, state, [(seq, event, reason)]) of every illegal_parking incident in the database."""
    db = open_database(db_url)
    try:
        with db.transaction() as s:
            rows = s.scalars(sa.select(Incident).where(Incident.type == "illegal_parking")).all()
            return [(r.id, r.state, [(e.seq, e.event, json.loads(e.payload).get("reason"))
                                     for e in repo.incident_events(s, r.id)]) for r in rows]
    finally:
        db.dispose()


def _open_on(db_url: str) -> list[str]:
    db = open_database(db_url)
    try:
        with db.transaction() as s:
            return [r.id for r in repo.open_incidents_of(s, ["street"])]
    finally:
        db.dispose()


@pytest.mark.parametrize("processes", ["1", "2"], ids=["one-process", "worker-shards"])
def test_sigterm_closes_the_open_incident_with_a_reason(asset_path: Any, mosquitto: Any, tmp_path: Path,
                                                        processes: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'patrol.db'}"
    run = Run(_site(tmp_path, db_url, mosquitto.port, asset_path("vehicle_counting_input_video")),
              "--processes", processes)
    try:
        run.wait_for("the parked car's incident opened", lambda: bool(run.opened()))
        assert run.stop(signal.SIGTERM) == 0
    finally:
        run.kill()
    (opened,) = run.opened()
    closed = [e for e in run.events if e["event"] == "closed" and e["incident_id"] == opened["incident_id"]]
    assert [(e["reason"], e["seq"] > opened["seq"]) for e in closed] == [("pipeline_stopped", True)]
    assert _open_on(db_url) == [], "no incident left open after a graceful stop"
    ((_, state, events),) = _incidents(db_url)
    assert state == "closed" and events[-1][1:] == ("closed", "pipeline_stopped")


def test_restart_after_sigkill_continues_the_parked_cars_incident_not_a_second_one(
        asset_path: Any, mosquitto: Any, tmp_path: Path, db_url: str) -> None:
    cfg = _site(tmp_path, db_url, mosquitto.port, asset_path("vehicle_counting_input_video"))
    first = Run(cfg)
    try:
        first.wait_for("the parked car's incident opened", lambda: bool(first.opened()))
        time.sleep(0.5)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(30)
    finally:
        first.kill()
    (opened,) = first.opened()
    assert _open_on(db_url) == [opened["incident_id"]], "a crash leaves it open"

    second = Run(cfg)
    try:
        def resumed() -> bool:
            return any(e["incident_id"] == opened["incident_id"] and e["event"] == "updated" for e in second.events)
        second.wait_for("the incident resumed after the restart", resumed)
        assert second.stop(signal.SIGTERM) == 0
    finally:
        second.kill()
    assert second.opened() == [], "the restart opened no second incident for the same car"
    assert any("left open by an earlier run" in line for line in second.stderr)
    (incident,) = _incidents(db_url)
    incident_id, state, events = incident
    assert incident_id == opened["incident_id"] and state == "closed"
    seqs = [seq for seq, _, _ in events]
    assert seqs == list(range(1, len(seqs) + 1)), "one contiguous sequence across both runs"
    assert events[0][1] == "opened" and events[-1][1:] == ("closed", "pipeline_stopped")
    assert "updated" in [e for _, e, _ in events[1:-1]]


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr (e2fsprogs) not installed")
@pytest.mark.parametrize("processes", ["1", "2"], ids=["one-process", "worker-shards"])
def test_database_unwritable_and_nowhere_to_spill_stops_the_run_loudly(
        asset_path: Any, mosquitto: Any, tmp_path: Path, processes: str) -> None:
    db_path = tmp_path / "patrol.db"
    db_url = f"sqlite:///{db_path}"
    spill = tmp_path / "spill"
    spill.mkdir()
    cfg = _site(tmp_path, db_url, mosquitto.port, asset_path("vehicle_counting_input_video"))
    files = [db_path, db_path.with_name(db_path.name + "-wal"), spill]
    run = Run(cfg, "--spill-dir", str(spill), "--hold-events", "0", "--processes", processes)
    frozen = False
    try:
        run.wait_for("the camera streaming", lambda: any("connecting -> streaming" in line for line in run.stderr))
        time.sleep(1.0)
        subprocess.run(["chattr", "+i", *[str(f) for f in files if f.exists()]], check=True)
        frozen = True
        rc = run.proc.wait(120)
        for t in run._threads:
            t.join(10)
    finally:
        run.kill()
        if frozen:
            subprocess.run(["chattr", "-i", *[str(f) for f in files if f.exists()]], check=True)
    err = "".join(run.stderr)
    assert rc == 3, err[-3000:]
    assert "stopped so as not to lose events" in err and "cannot commit to the database" in err
    (opened,) = run.opened()  # the event the database never took is on stdout
    assert opened["incident_id"] not in [i for i, _, _ in _incidents(db_url)]


def test_sigterm_closes_an_open_camera_offline_incident_too(mosquitto: Any, tmp_path: Path) -> None:
    from run_helpers import closed_port

    db_url = f"sqlite:///{tmp_path / 'patrol.db'}"
    site = {
        "site": {"name": "durability-offline", "timezone": "UTC"},
        "database": {"url": db_url},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "cameras": [{"id": "street", "url": f"rtsp://127.0.0.1:{closed_port()}/gate", "grid_cell": "JD-0103",
                     "watchdog": {"offline_after_s": 1.5, "open_timeout_s": 1, "backoff_initial_s": 0.5}}],
    }
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(site), encoding="utf-8")
    run = Run(cfg, "--no-evidence")
    try:
        run.wait_for("the dead camera's camera_offline incident",
                     lambda: any(e["type"] == "camera_offline" and e["event"] == "opened" for e in run.events))
        time.sleep(0.5)
        assert run.stop(signal.SIGTERM) == 0
    finally:
        run.kill()
    (opened,) = [e for e in run.events if e["type"] == "camera_offline" and e["event"] == "opened"]
    closed = [e for e in run.events if e["incident_id"] == opened["incident_id"] and e["event"] == "closed"]
    assert [(e["seq"], e["reason"]) for e in closed] == [(2, "pipeline_stopped")]
    assert _open_on(db_url) == []
