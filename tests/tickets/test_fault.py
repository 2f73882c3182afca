"""Acceptance: 1,000 incident events reach the ticket database exactly once, in order per incident,
while the broker is stopped and restarted twice and the ticket service is SIGKILLed and restarted.

Real processes: mosquitto (with persistence), ``patrol tickets serve`` as a subprocess, the
pipeline's outbox sink and publisher in this process on their own database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from alerts.mqtt import MqttTransport
from alerts.outbox import OutboxPublisher, OutboxSink
from alerts.transport import Endpoint
from camera_config.schema import MqttConfig
from core.events import IncidentEvent
from core.schema import schema_errors
from core.topics import Topics
from storage import repository as repo
from storage.db import open_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INCIDENTS = 100
EVENTS_PER_INCIDENT = 10


def _events(make_incident_event) -> list[IncidentEvent]:  # type: ignore[no-untyped-def]
    """Round-robin over incidents, each incident's events in seq order."""
    out = []
    for seq in range(1, EVENTS_PER_INCIDENT + 1):
        kind = "opened" if seq == 1 else "closed" if seq == EVENTS_PER_INCIDENT else "updated"
        for i in range(INCIDENTS):
            out.append(make_incident_event(f"fault-{i:04d}", seq, kind, zone_id=f"z{i}",
                                           camera_id=f"cam-{i % 4}"))
    return out


class _AvailabilityWatcher:
    def __init__(self, port: int, topic: str) -> None:
        self.online = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id="availability-watcher")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = lambda _c, _u, m: self.online.set() if m.payload == b"online" else None
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def wait_online(self, timeout: float) -> bool:
        return self.online.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "patrol", "--log-level", "info", "tickets", "serve",
                             "--config", str(config), "--client-id", "tickets-fault"],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def test_thousand_events_through_broker_restarts_and_a_killed_consumer(
        tmp_path: Path, db_url: str, mosquitto, make_incident_event) -> None:  # type: ignore[no-untyped-def]
    site = {"site": {"name": "fault test"},
            "cameras": [{"id": "cam-0", "url": "rtsp://cam/0", "grid_cell": "G-01"}],
            "mqtt": {"port": mosquitto.port}, "database": {"url": db_url}}
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site))
    serve_log = tmp_path / "serve.log"
    ticket_db = open_database(db_url)  # migrate once before two processes race to

    pipeline_db = open_database(f"sqlite:///{tmp_path / 'pipeline.db'}")
    link = MqttTransport(MqttConfig(port=mosquitto.port), Endpoint(
        "pipeline-fault", availability=Topics().availability("pipeline-fault"), persistent=True))
    publisher = OutboxPublisher(pipeline_db, link, ack_timeout_s=2.0, answer_replays=True)
    sink = OutboxSink(pipeline_db, publisher=publisher)
    events = _events(make_incident_event)

    watcher = _AvailabilityWatcher(mosquitto.port, Topics().availability("tickets-fault"))
    serve = _serve(config, serve_log)
    assert watcher.wait_online(60), "ticket service never came online"  # its session and subscription exist
    link.start()
    publisher.start()

    def produce() -> None:
        for i in range(0, len(events), 10):  # 100 batches over ~10 s
            sink.publish(events[i:i + 10])
            time.sleep(0.1)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(1.5)
        mosquitto.stop()                       # broker down #1
        time.sleep(1.5)
        mosquitto.start()
        time.sleep(1.5)
        serve.send_signal(signal.SIGKILL)      # consumer dies mid-stream
        serve.wait(10)
        time.sleep(1.5)
        watcher.online.clear()
        serve = _serve(config, serve_log)      # and comes back with the same session
        assert watcher.wait_online(60)
        mosquitto.stop()                       # broker down #2
        time.sleep(1.5)
        mosquitto.start()
        producer.join(60)

        def applied() -> int:
            with ticket_db.transaction() as s:
                return sum(1 for r in repo.inbox_rows(s) if r.applied_at is not None)

        deadline = time.monotonic() + 90
        while applied() < len(events) and time.monotonic() < deadline:
            assert serve.poll() is None, serve_log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        publisher.stop(flush_timeout_s=0)
        link.stop()
        watcher.close()
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(15)
            except subprocess.TimeoutExpired:
                serve.kill()

    with pipeline_db.transaction() as s:
        outbox = repo.outbox_counts(s)
        payloads = [json.loads(e.payload) for i in range(INCIDENTS) for e in repo.incident_events(s, f"fault-{i:04d}")]
    assert len(payloads) == len(events) and all(schema_errors(p) == [] for p in payloads)  # what went out
    with ticket_db.transaction() as s:
        rows = repo.inbox_rows(s)
        tickets = repo.list_tickets(s, limit=10_000)
        event_rows = sum(len(repo.incident_events(s, f"fault-{i:04d}")) for i in range(INCIDENTS))
    sent_ids = sorted((e.incident_id, e.seq) for e in events)
    got_ids = sorted((r.incident_id, r.seq) for r in rows)
    print(f"\nfault test ({db_url.split(':')[0]}): published {len(events)} events "
          f"(outbox {outbox}); ticket DB has {len(rows)} received, "
          f"{sum(r.applied_at is not None for r in rows)} applied, {event_rows} incident events, "
          f"{len(tickets)} tickets; ids equal: {got_ids == sent_ids}")
    missing = sorted(set(sent_ids) - set(got_ids))
    if missing:
        print(f"missing {len(missing)}: first {missing[:10]}, seqs {sorted({q for _i, q in missing})}")
        print("broker log:", mosquitto.log.read_text()[-4000:] if mosquitto.log.exists() else "(none)")
    assert outbox == {"sent": len(events)}
    assert got_ids == sent_ids                                   # every event, exactly once
    assert all(r.applied_at is not None for r in rows)
    assert event_rows == len(events)
    by_incident: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in rows:
        by_incident[r.incident_id].append((r.apply_order or 0, r.seq))
    for incident_id, pairs in by_incident.items():               # in order per incident
        assert [seq for _order, seq in sorted(pairs)] == list(range(1, EVENTS_PER_INCIDENT + 1)), incident_id
    assert len(tickets) == INCIDENTS                             # one ticket per problem, none twice
    assert os.path.exists(serve_log)
    ticket_db.dispose()
    pipeline_db.dispose()
