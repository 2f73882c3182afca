"""The database fails under a running ticket service: messages stay unacknowledged, the service waits
for the database, reconnects, and every event still lands exactly once."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from camera_config.schema import MqttConfig, TicketsConfig
from storage import repository as repo
from storage.db import open_database
from tickets.service import TicketService

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except Exception:  # the database is down: keep waiting
            pass
        time.sleep(0.2)
    return False


def test_database_outage_loses_nothing(own_postgres, mosquitto, make_incident_event) -> None:  # type: ignore[no-untyped-def]
    db = open_database(own_postgres.url)
    service = TicketService(db, MqttConfig(port=mosquitto.port), TicketsConfig(), client_id="tickets-dbfail")
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    assert service.transport.wait_connected(10)
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id="pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()

    events = [make_incident_event(f"dbf-{i:04d}", seq, "opened" if seq == 1 else "updated", zone_id=f"z{i}")
              for seq in (1, 2, 3) for i in range(10)]

    def received() -> int:
        with db.transaction() as s:
            return len(repo.inbox_rows(s))

    for ev in events[:10]:
        pub.publish(ev.topic(), ev.to_json(), qos=1).wait_for_publish(5)
    assert _wait(lambda: received() == 10, 30)

    own_postgres.stop()                               # the database goes away mid-stream
    for ev in events[10:]:
        pub.publish(ev.topic(), ev.to_json(), qos=1).wait_for_publish(5)
    time.sleep(3)
    own_postgres.start()

    try:
        ok = _wait(lambda: received() == 30, 90)
        with db.transaction() as s:
            got = {(r.incident_id, r.seq) for r in repo.inbox_rows(s)}
        print("missing:", sorted({(e.incident_id, e.seq) for e in events} - got), service.counts)
        assert ok
        with db.transaction() as s:
            rows = repo.inbox_rows(s)
            assert sorted((r.incident_id, r.seq) for r in rows) == sorted((e.incident_id, e.seq) for e in events)
            assert all(r.applied_at is not None for r in rows)
            assert len(repo.list_tickets(s)) == 10
    finally:
        stop.set()
        thread.join(15)
        pub.disconnect()
        pub.loop_stop()
        db.dispose()
