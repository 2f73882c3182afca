"""``patrol run`` sweeps the evidence store on the site's retention schedule by itself (no cron,
no ``patrol review retention``): a run of a few seconds with a 0.5 s interval deletes evidence 40
days old of a closed incident and keeps that of an incident still open."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from run_helpers import closed_port

from core.events import IncidentEvent
from evidence.store import EvidenceStore
from patrol.cli import main
from storage import repository as repo
from storage.db import open_database

DAY = 86_400.0


def put_evidence(store: EvidenceStore, incident_id: str, opened_at: float) -> None:
    folder = store.incident_dir(incident_id)
    folder.mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(b"\0" * 1000)
    (folder / "manifest.json").write_text(json.dumps({"times": {"opened_at": opened_at}}))


@pytest.mark.integration
def test_patrol_run_deletes_expired_evidence_on_its_schedule(tmp_path: Path, make_incident_event) -> None:  # type: ignore[no-untyped-def]
    db_url = f"sqlite:///{tmp_path / 'patrol.db'}"
    old = time.time() - 40 * DAY
    db = open_database(db_url)
    try:
        with db.transaction() as s:
            for incident_id, closed in (("inc-closed-001", True), ("inc-open-00002", False)):
                events: list[IncidentEvent] = [make_incident_event(incident_id, 1, "opened", started_at=old,
                                                                   event_at=old, camera_id="other")]
                if closed:
                    events.append(make_incident_event(incident_id, 2, "closed", started_at=old, event_at=old + 60,
                                                      camera_id="other"))
                for ev in events:
                    repo.apply_incident_event(s, ev)
    finally:
        db.dispose()
    store = EvidenceStore(tmp_path / "evidence")
    put_evidence(store, "inc-closed-001", old)
    put_evidence(store, "inc-open-00002", old)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({
        "site": {"name": "run-retention"},
        "database": {"url": db_url},
        "mqtt": {"host": "127.0.0.1", "port": closed_port()},
        "evidence": {"dir": str(tmp_path / "evidence"), "retention": {"max_age_days": 30, "interval_s": 0.5}},
        "cameras": [{"id": "gate", "url": f"rtsp://127.0.0.1:{closed_port()}/gate", "grid_cell": "G1",
                     "watchdog": {"open_timeout_s": 1, "backoff_initial_s": 0.5}}]}), encoding="utf-8")
    assert main(["run", "--config", str(cfg), "--duration", "4", "--no-evidence",
                 "--spill-dir", str(tmp_path / "spill")]) == 0
    assert [e.incident_id for e in store.entries()] == ["inc-open-00002"]
