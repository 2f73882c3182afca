"""Issue 14: a held event whose predecessors never come is dead-lettered after a bounded time, its
replay requests bounded; a verify result the service did not ask for is ignored with a log line,
on a real mosquitto with the per-role ACL (a forger without the verifier's account is refused by
the broker itself)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from camera_config.schema import MqttConfig, TicketsConfig
from core.topics import Topics
from storage import repository as repo
from storage.db import Database
from tests.conftest import AclBroker
from tickets.desk import transition
from tickets.service import TicketService

pytestmark = pytest.mark.integration

TOPICS = Topics()


def _wait(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _client(port: int, client_id: str, user: str | None = None, password: str | None = None) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    if user is not None:
        client.username_pw_set(user, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class _Serving:
    def __init__(self, service: TicketService) -> None:
        self.service = service
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=service.run, args=(self.stop_flag,), daemon=True)
        self.thread.start()
        assert service.transport.wait_connected(15)

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(15)


def test_a_held_event_without_predecessors_is_dead_lettered_and_its_replay_requests_are_bounded(
        db: Database, mosquitto, make_incident_event, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tickets.service")
    requests: list[dict[str, Any]] = []
    watcher = _client(mosquitto.port, "replay-watcher")
    watcher.on_message = lambda _c, _u, m: requests.append(json.loads(m.payload))
    watcher.subscribe(TOPICS.replay_request, qos=1)
    cfg = TicketsConfig(held_timeout_s=3.0, gap_patience_s=0.5, gap_requests=2, gap_request_window_s=60.0)
    serving = _Serving(TicketService(db, MqttConfig(port=mosquitto.port), cfg, client_id="tickets-held"))
    client = _client(mosquitto.port, "held-pub")
    try:
        orphan = make_incident_event("inc-orphan-1", 5, "updated")       # seq 5; 1-4 never come
        good = make_incident_event("inc-fine-001", 1, zone_id="other")
        for ev in (orphan, good):
            client.publish(ev.topic(), ev.to_json(), qos=1).wait_for_publish(5)
        started = time.monotonic()

        def letters() -> list[str]:
            with db.transaction() as s:
                return [d.reason for d in repo.list_dead_letters(s)]

        assert _wait(lambda: letters() != [], 15)
        took = time.monotonic() - started
        (reason,) = letters()
        assert "incident inc-orphan-1 seq 5 waits for seq 1-4, which never arrived (last applied seq 0)" in reason
        assert "held_timeout_s 3" in reason
        assert 2.5 <= took <= 8.0, took                                   # bounded, not before its time
        with db.transaction() as s:
            assert repo.held_events(s, "inc-orphan-1") == []              # no longer held
            assert {t.incident_id for t in repo.list_tickets(s)} == {"inc-fine-001"}
            (letter,) = repo.list_dead_letters(s)
            assert json.loads(letter.payload)["seq"] == 5                 # the event itself is kept
        time.sleep(1.5)                                                   # no more requests after that
        gap_requests = [r for r in requests if r.get("incidents")]
        assert [r["incidents"] for r in gap_requests] == [["inc-orphan-1"]] * 2   # the limit, not more
        assert all(r["by"] == "tickets-held" for r in gap_requests)
        assert any("dead-lettered a held event" in r.getMessage() for r in caplog.records)
    finally:
        serving.stop()
        for c in (client, watcher):
            c.disconnect()
            c.loop_stop()


# ---------------------------------------------------------------- forged verify results, ACL'd broker

PASSWORDS = AclBroker.passwords


def test_a_verify_result_the_service_did_not_ask_for_is_ignored_with_a_log_line(
        db: Database, acl_broker, make_incident_event, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tickets.service")
    port = acl_broker.port
    mqtt_cfg = acl_broker.mqtt()
    serving = _Serving(TicketService(db, mqtt_cfg, TicketsConfig(), client_id="tickets-verify"))
    requests: list[dict[str, Any]] = []
    verifier = _client(port, "verifier-probe", "vf-acct", PASSWORDS["vf-acct"])
    verifier.on_message = lambda _c, _u, m: requests.append(json.loads(m.payload))
    verifier.subscribe(TOPICS.verify_request(), qos=1)
    try:
        ev = make_incident_event("inc-verify-1", 1)
        assert "RC:135" not in acl_broker.pub("pl-acct", ev.topic(), ev.to_json())

        def state() -> str | None:
            with db.transaction() as s:
                tickets = repo.list_tickets(s)
                return tickets[0].state if tickets else None

        assert _wait(lambda: state() == "accepted")
        with db.transaction() as s:
            tid = repo.list_tickets(s)[0].id
            transition(s, tid, "dispatched", actor="op", reason="to traffic police")
            transition(s, tid, "disposed", actor="tp-12", reason="car towed")
        serving.service.publisher.wake()
        assert _wait(lambda: len(requests) == 1)
        request_id = requests[0]["request_id"]
        gone = {"ticket_id": tid, "request_id": request_id, "present": False, "frames": 6, "frames_present": 0}

        # the review page's account cannot even send it: the broker refuses (MQTT v5 reason code 135)
        assert "RC:135" in acl_broker.pub("rv-acct", TOPICS.verify_result("cam-1"), json.dumps(gone))
        # the verifier's account, but not an answer to the request this service made: ignored, logged
        forged = [({**gone, "request_id": "f" * 32}, "cam-1", "is not the open verify request of ticket"),
                  ({**gone, "ticket_id": tid + 100}, "cam-1", f"no ticket {tid + 100}"),
                  (gone, "cam-9", f"the topic names camera 'cam-9'; ticket {tid} is on 'cam-1'")]
        for payload, camera, _why in forged:
            assert "RC:135" not in acl_broker.pub("vf-acct", TOPICS.verify_result(camera), json.dumps(payload))

        def letters() -> list[str]:
            with db.transaction() as s:
                return [d.reason for d in repo.list_dead_letters(s)]

        assert _wait(lambda: len(letters()) == len(forged))
        assert state() == "disposed"                                     # nothing forged moved it
        lines = [r.getMessage() for r in caplog.records if "ignored a verify result" in r.getMessage()]
        for _payload, _camera, why in forged:
            assert any(why in line for line in lines), (why, lines)
            assert any(why in reason and reason.startswith("verify result ignored:") for reason in letters())

        # the real answer, from the verifier, to the request made: applied
        assert "RC:135" not in acl_broker.pub("vf-acct", TOPICS.verify_result("cam-1"), json.dumps(gone))
        assert _wait(lambda: state() == "verified")
        with db.transaction() as s:
            last = repo.ticket_history(s, tid)[-1]
            assert (last.actor, last.from_state, last.to_state) == ("verifier", "disposed", "verified")
    finally:
        serving.stop()
        verifier.disconnect()
        verifier.loop_stop()
