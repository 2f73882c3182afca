"""The ticket service against a real mosquitto: tickets from the queue, dead letters for bad messages
(the consumer keeps running), and a verify request when a ticket is disposed."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from camera_config.schema import MqttConfig, TicketsConfig
from storage import repository as repo
from storage.db import Database
from tickets.desk import transition
from tickets.service import TicketService

pytestmark = pytest.mark.integration


def _wait(cond: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="test-pub",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


@pytest.fixture
def service(db: Database, mosquitto):  # type: ignore[no-untyped-def]
    svc = TicketService(db, MqttConfig(port=mosquitto.port, max_payload_bytes=4096), TicketsConfig(),
                        client_id="tickets-test")
    stop = threading.Event()
    thread = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    thread.start()
    assert svc.transport.wait_connected(10)  # subscribed: SUBACK received
    yield svc
    stop.set()
    thread.join(10)


def _tickets(db: Database) -> int:
    with db.transaction() as s:
        return len(repo.list_tickets(s))


def test_bad_messages_are_dead_lettered_and_the_service_keeps_going(db: Database, mosquitto, service,
                                                                     make_incident_event) -> None:
    good = make_incident_event("inc-good", 1)
    valid = json.loads(good.to_json())
    bad: dict[str, tuple[str, bytes]] = {
        "not JSON": (good.topic(), b"{this is not json"),
        "not UTF-8 text: invalid start byte at byte 0": (good.topic(), b"\xff\xfe\x00garbage"),
        "oversized: 5000 bytes > limit 4096": (good.topic(), b"x" * 5000),
        "schema: seq": (good.topic(), json.dumps({**valid, "seq": -3}).encode()),
        "schema: (top level): 'camera_id' is a required property":
            (good.topic(), json.dumps({k: v for k, v in valid.items() if k != "camera_id"}).encode()),
        "does not match payload": ("patrol/v1/incidents/street_stall/cam-1", good.to_json().encode()),
        "not an incident topic": ("patrol/v1/incidents/illegal_parking", good.to_json().encode()),
    }
    client = _publisher(mosquitto.port)
    for topic, payload in bad.values():
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.publish(good.topic(), good.to_json(), qos=1).wait_for_publish(5)

    assert _wait(lambda: _tickets(db) == 1)
    with db.transaction() as s:
        assert _wait(lambda: len(repo.list_dead_letters(s)) == len(bad))
    with db.transaction() as s:
        letters = repo.list_dead_letters(s)
        reasons = [d.reason for d in letters]
        for expected in bad:
            assert any(expected in r for r in reasons), (expected, reasons)
        oversized = next(d for d in letters if d.reason.startswith("oversized"))
        assert oversized.size == 5000
    assert service.counts.get("dead_letter") == len(bad)

    # still consuming after all that
    later = make_incident_event("inc-later", 1, zone_id="other")
    client.publish(later.topic(), later.to_json(), qos=1).wait_for_publish(5)
    assert _wait(lambda: _tickets(db) == 2)
    client.disconnect()
    client.loop_stop()


def test_disposal_publishes_a_verify_request(db: Database, mosquitto, service, make_incident_event) -> None:
    got: list[dict] = []
    watcher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="verifier-stub",
                          protocol=mqtt.MQTTv5)
    watcher.on_message = lambda _c, _u, m: got.append(json.loads(m.payload))
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe("patrol/v1/verify/request/+", qos=1)
    watcher.loop_start()

    ev = make_incident_event("inc-aaaa", 1)
    client = _publisher(mosquitto.port)
    client.publish(ev.topic(), ev.to_json(), qos=1).wait_for_publish(5)
    assert _wait(lambda: _tickets(db) == 1)
    with db.transaction() as s:
        tid = repo.list_tickets(s)[0].id
        transition(s, tid, "dispatched", actor="op", reason="send")
        transition(s, tid, "disposed", actor="tp", reason="towed")
    service.publisher.wake()
    assert _wait(lambda: len(got) == 1)
    assert (got[0]["ticket_id"], got[0]["camera_id"], got[0]["zone_id"]) == (tid, "cam-1", "kerb")

    # the verifier answers "gone": the service applies it
    result = {"request_id": got[0]["request_id"], "ticket_id": tid, "present": False, "frames": 6,
              "frames_present": 0, "boxes": []}
    client.publish("patrol/v1/verify/result/cam-1", json.dumps(result), qos=1).wait_for_publish(5)

    def state() -> str:
        with db.transaction() as s:
            return repo.get_ticket(s, tid).state
    assert _wait(lambda: state() == "verified")
    for c in (client, watcher):
        c.disconnect()
        c.loop_stop()
