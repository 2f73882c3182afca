"""``patrol run`` publishes: a real clip, the real detector and rules, a real broker and database.

The street clip has a silver car standing at the right-hand kerb for the whole clip (ground point
about (0.965, 0.543), see tests/rules/test_parking_footage.py). With an 8 s limit the parking rule
fires about 8 s into the clip; the run lasts 16 s of real time at the clip's own pace. Afterwards
the incident must be in the database, its event on the broker (valid against the committed
schema), and its evidence (clip, snapshot, manifest) on disk and referenced from the database.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
import yaml

from patrol.cli import main

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "core" / "schema" / "incident_event.v1.json").read_text(encoding="utf-8"))
KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 8,
        "polygon": [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}


def subscribe(port: int, topic: str) -> tuple[mqtt.Client, list[mqtt.MQTTMessage], threading.Event]:
    got: list[mqtt.MQTTMessage] = []
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-listener")
    client.on_connect = lambda c, *_: (c.subscribe(topic, qos=1), ready.set())
    client.on_message = lambda _c, _u, msg: got.append(msg)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, got, ready


@pytest.mark.integration
@pytest.mark.slow
def test_run_commits_publishes_and_records_evidence(asset_path: Any, mosquitto: Any, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    db_url = f"sqlite:///{tmp_path / 'patrol.db'}"
    site = {
        "site": {"name": "publish-test", "timezone": "UTC"},
        "database": {"url": db_url},
        "evidence": {"dir": str(tmp_path / "evidence"), "pre_roll_s": 2, "post_roll_s": 2},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        "cameras": [{"id": "street", "url": str(asset_path("vehicle_counting_input_video")), "grid_cell": "JD-0101",
                     "analysis_fps": 2, "zones": [KERB]}],
    }
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(site), encoding="utf-8")
    listener, got, ready = subscribe(mosquitto.port, "patrol/v1/incidents/#")
    try:
        assert ready.wait(10)
        assert main(["run", "--config", str(cfg), "--duration", "16", "--pipeline-id", "test-1"]) == 0
    finally:
        listener.loop_stop()
        listener.disconnect()

    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    opened = [e for e in printed if e["event"] == "opened"]
    assert [(e["type"], e["zone_id"]) for e in opened] == [("illegal_parking", "kerb-right")], printed

    payloads = [json.loads(m.payload) for m in got]
    for p in payloads:
        jsonschema.validate(p, SCHEMA)
    assert [(m.topic, p["incident_id"], p["seq"]) for m, p in zip(got, payloads, strict=True)][:1] == [
        ("patrol/v1/incidents/illegal_parking/street", opened[0]["incident_id"], 1)]

    from storage import repository as repo
    from storage.db import open_database

    db = open_database(db_url)
    try:
        with db.transaction() as s:
            incident = repo.get_incident(s, opened[0]["incident_id"])
            assert incident.type == "illegal_parking" and incident.grid_cell == "JD-0101"
            refs = {r.kind: r for r in repo.evidence_of(s, incident.id)}
            assert repo.outbox_counts(s).get("pending", 0) == 0
    finally:
        db.dispose()
    assert {"clip", "snapshot", "frame", "manifest"} <= set(refs)
    folder = tmp_path / "evidence" / incident.id
    assert (folder / "clip.mp4").stat().st_size > 10_000 and (folder / "snapshot.jpg").stat().st_size > 1_000
    links = opened[0]["evidence"]["links"]
    assert {"clip", "snapshot"} <= set(links), links
