"""The durable outbox against a real mosquitto: commit first, publish in order, sent only after PUBACK,
nothing lost while the broker is down or when the process dies between commit and publish."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alerts.mqtt import MqttTransport
from alerts.outbox import OutboxPublisher, OutboxSink
from alerts.transport import Endpoint
from camera_config.schema import MqttConfig
from core.schema import schema_errors
from core.topics import Topics
from storage import repository as repo
from storage.db import Database

pytestmark = pytest.mark.integration


class Collector:
    """A test subscriber with a persistent session, so nothing is missed across broker restarts."""

    def __init__(self, port: int, topic: str = "patrol/v1/incidents/#", client_id: str = "collector") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def wait_for(self, n: int, timeout: float = 30.0) -> list[tuple[str, bytes, bool]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(cond: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _counts(db: Database) -> dict[str, int]:
    with db.transaction() as s:
        return repo.outbox_counts(s)


def test_events_wait_while_the_broker_is_down_then_go_in_order(db: Database, mosquitto, make_incident_event):
    cfg = MqttConfig(port=mosquitto.port)
    collector = Collector(mosquitto.port)
    assert _wait(lambda: collector.client.is_connected())
    mosquitto.stop()

    link = MqttTransport(cfg, Endpoint("pipeline-test", availability=Topics().availability("pipeline-test")))
    publisher = OutboxPublisher(db, link, ack_timeout_s=2.0)
    sink = OutboxSink(db, publisher=publisher)
    link.start()
    publisher.start()
    events = [make_incident_event(f"inc-{i % 3:04d}", i // 3 + 1, "opened" if i < 3 else "updated")
              for i in range(60)]
    for i in range(0, 60, 6):
        sink.publish(events[i:i + 6])
    time.sleep(1.0)
    assert _counts(db) == {"pending": 60}, "nothing may be marked sent without a broker"

    mosquitto.start()
    assert _wait(lambda: _counts(db) == {"sent": 60}), _counts(db)
    got = collector.wait_for(60)
    publisher.stop()
    link.stop()
    collector.close()

    payloads = [json.loads(p) for _t, p, _r in got]
    keys = [(p["incident_id"], p["seq"]) for p in payloads]
    assert sorted(set(keys)) == sorted((e.incident_id, e.seq) for e in events)
    for incident in ("inc-0000", "inc-0001", "inc-0002"):
        first_seen = [seq for inc, seq in dict.fromkeys(keys) if inc == incident]
        assert first_seen == sorted(first_seen) == list(range(1, 21))
    assert all(schema_errors(p) == [] for p in payloads)
    assert all(t == "patrol/v1/incidents/illegal_parking/cam-1" for t, _p, _r in got)


def test_a_crash_between_commit_and_publish_loses_nothing(db: Database, mosquitto, make_incident_event):
    sink = OutboxSink(db)  # the process "dies" right after the commit: no publisher ever ran
    sink.publish([make_incident_event("inc-aaaa", i, "opened" if i == 1 else "updated") for i in (1, 2, 3)])
    assert _counts(db) == {"pending": 3}

    collector = Collector(mosquitto.port)
    assert _wait(lambda: collector.client.is_connected())
    link = MqttTransport(MqttConfig(port=mosquitto.port), Endpoint("pipeline-restarted"))
    publisher = OutboxPublisher(db, link)  # the restarted process
    link.start()
    publisher.start()
    assert link.wait_connected(10)
    OutboxSink(db, publisher=publisher).flush(30)  # what the worker calls when it stops
    assert _counts(db) == {"sent": 3}
    got = collector.wait_for(3)
    publisher.stop()
    link.stop()
    collector.close()
    assert [json.loads(p)["seq"] for _t, p, _r in got] == [1, 2, 3]


def test_availability_is_retained_with_a_last_will(mosquitto) -> None:
    topic = Topics().availability("pipe-1")
    link = MqttTransport(MqttConfig(port=mosquitto.port), Endpoint("pipe-1", availability=topic))
    link.start()
    assert link.wait_connected(10)
    watcher = Collector(mosquitto.port, topic, client_id="watcher")
    assert watcher.wait_for(1)[0] == (topic, b"online", True)
    link.kill()  # the process dies: no DISCONNECT
    got = watcher.wait_for(2)
    assert got[1][:2] == (topic, b"offline"), got
    late = Collector(mosquitto.port, topic, client_id="late-watcher")
    assert late.wait_for(1) == [(topic, b"offline", True)]  # retained for whoever comes later
    watcher.close()
    late.close()


def test_broker_auth_username_password(mosquitto_auth) -> None:
    good = MqttTransport(MqttConfig(port=mosquitto_auth.port, username="pipeline", password="s3cret-pw"),
                         Endpoint("auth-ok"))
    bad = MqttTransport(MqttConfig(port=mosquitto_auth.port, username="pipeline", password="wrong"),
                        Endpoint("auth-bad"))
    good.start()
    bad.start()
    try:
        assert good.wait_connected(10)
        assert not bad.wait_connected(2)
    finally:
        good.stop()
        bad.stop()


def test_outbox_from_site_config(tmp_path, mosquitto, make_incident_event) -> None:  # type: ignore[no-untyped-def]
    from alerts.outbox import Outbox
    from camera_config.loader import parse_config

    site = parse_config({"site": {"name": "s"}, "cameras": [{"id": "cam-1", "url": "x.mp4", "grid_cell": "G"}],
                         "mqtt": {"port": mosquitto.port, "client_id": "site-a"},
                         "database": {"url": f"sqlite:///{tmp_path / 'pipe.db'}"}})
    collector = Collector(mosquitto.port, "patrol/v1/#")
    assert _wait(lambda: collector.client.is_connected())
    with Outbox.from_site(site, "pipe-7") as outbox:
        assert outbox.transport.endpoint.client_id == "site-a-pipe-7"
        assert outbox.transport.wait_connected(10)
        outbox.sink.publish([make_incident_event("inc-site", 1)])
        outbox.sink.flush(10)
        assert _counts(outbox.db) == {"sent": 1}
    got = collector.wait_for(3)
    collector.close()
    topics = [t for t, _p, _r in got]
    assert "patrol/v1/incidents/illegal_parking/cam-1" in topics
    assert [p for t, p, _r in got if t == "patrol/v1/availability/pipe-7"] == [b"online", b"offline"]
