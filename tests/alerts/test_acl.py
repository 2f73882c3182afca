"""Broker authorization against a real mosquitto with a password file and the per-role ACL.

Forged messages from a second broker account (the review page's, and the pipeline's where it is
not its role) are refused by the broker itself — mosquitto answers the MQTT v5 publish with reason
code 135 (not authorized), shown by mosquitto's own client — and reach neither the ticket service
nor the pipelines; the same messages from the right accounts go through.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.acl import ROLES, acl_text, role_rules, site_acl
from alerts.mqtt import MqttTransport
from alerts.transport import Endpoint, Message
from camera_config.schema import MqttAccount, MqttConfig, TicketsConfig
from core.errors import ConfigError
from core.topics import TICKETS_GROUP, Topics
from patrol.cli import main as patrol_main
from storage import repository as repo
from storage.db import open_database
from tests.conftest import AclBroker
from tickets.service import TicketService

TOPICS = Topics()
PASSWORDS = AclBroker.passwords
ACCOUNTS = AclBroker.accounts


def _wait(cond: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _incident(make_incident_event: Any, incident_id: str, seq: int = 1, event: str = "opened") -> tuple[str, str]:
    ev = make_incident_event(incident_id, seq, event)
    return ev.topic(), ev.to_json()


def test_acl_text_gives_each_role_only_its_topics() -> None:
    text = acl_text(ACCOUNTS, TOPICS)  # type: ignore[arg-type]
    sections = {block.split("\n")[1].removeprefix("user "): block for block in text.split("\n# role: ")[1:]}
    assert set(sections) == set(PASSWORDS)
    review = sections["rv-acct"]
    assert "topic write patrol/v1/verdicts/#" in review
    assert "incidents" not in review and "verify/result" not in review and "replay" not in review
    assert "topic write patrol/v1/replay/request" in sections["tk-acct"]
    assert "topic write patrol/v1/verify/result/#" in sections["vf-acct"]
    assert all("verify/result" not in line or "read" in line for line in sections["pl-acct"].splitlines())
    writers = {role: {t for a, t in role_rules(role, TOPICS) if a != "read"} for role in ROLES}
    assert [r for r in ROLES if TOPICS.incidents in writers[r]] == ["pipeline"]
    assert [r for r in ROLES if TOPICS.replay_request in writers[r]] == ["tickets"]


def test_one_account_for_two_roles_and_missing_roles_are_refused() -> None:
    with pytest.raises(ConfigError, match="given to both 'pipeline' and 'review'"):
        acl_text({"pipeline": "shared", "review": "shared"}, TOPICS)
    with pytest.raises(ConfigError, match=r"no account for role.*verifier"):
        site_acl(MqttConfig(accounts={"pipeline": MqttAccount(username="a"), "tickets": MqttAccount(username="b"),
                                      "review": MqttAccount(username="c")}))


def test_patrol_broker_acl_writes_the_sites_acl(tmp_path: Path) -> None:
    site = {"site": {"name": "s1"},
            "cameras": [{"id": "cam-1", "url": "clip.mp4", "grid_cell": "G-1", "zones": []}],
            "mqtt": {"topic_prefix": "district7/v1",
                     "accounts": {r: {"username": u, "password": "x"} for r, u in ACCOUNTS.items()}}}
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(site))
    assert patrol_main(["broker", "acl", "--config", str(cfg), "--out", str(tmp_path / "acl")]) == 0
    written = (tmp_path / "acl").read_text()
    assert written == acl_text(ACCOUNTS, Topics("district7/v1"))  # type: ignore[arg-type]
    assert "topic write district7/v1/incidents/#" in written
    assert "password" not in written  # an ACL names accounts; passwords go in mosquitto_passwd's file


@pytest.mark.integration
def test_forged_messages_are_refused_by_the_broker_and_reach_no_one(acl_broker, make_incident_event) -> None:
    got: dict[str, list[Message]] = {"tickets": [], "pipeline": []}
    tickets = MqttTransport(acl_broker.mqtt("tickets"), Endpoint("acl-tickets"))
    tickets.subscribe(TOPICS.incidents, got["tickets"].append, shared_group=TICKETS_GROUP)
    tickets.subscribe(TOPICS.verify_result(), got["tickets"].append, shared_group=TICKETS_GROUP)
    pipeline = MqttTransport(acl_broker.mqtt("pipeline"), Endpoint("acl-pipeline"))
    pipeline.subscribe(TOPICS.replay_request, got["pipeline"].append)
    for t in (tickets, pipeline):
        t.start()
        assert t.wait_connected(10), "an ACL'd role could not subscribe to its own topics"
    try:
        opened = _incident(make_incident_event, "inc-forged")
        closed = _incident(make_incident_event, "inc-real", 2, "closed")
        verify = (TOPICS.verify_result("cam-1"), json.dumps({"ticket_id": 1, "camera_id": "cam-1", "present": False,
                                                            "request_id": "r1", "frames": 3}))
        replay = (TOPICS.replay_request, json.dumps({"since": 0}))
        forgeries = [("rv-acct", *opened), ("rv-acct", *closed), ("rv-acct", *verify), ("rv-acct", *replay),
                     ("pl-acct", *verify), ("pl-acct", *replay), ("vf-acct", *opened)]
        for user, topic, payload in forgeries:
            out = acl_broker.pub(user, topic, payload)
            print(f"{user} -> {topic}: " + " ".join(line for line in out.splitlines() if "PUBACK" in line))
            assert "received PUBACK" in out and "RC:135" in out, f"broker did not refuse {user} on {topic}: {out}"

        legit = [("pl-acct", *_incident(make_incident_event, "inc-legit")), ("vf-acct", *verify),
                 ("tk-acct", *replay)]
        for user, topic, payload in legit:
            out = acl_broker.pub(user, topic, payload)
            assert "RC:135" not in out and "received PUBACK" in out, out
        assert _wait(lambda: len(got["tickets"]) == 2 and len(got["pipeline"]) == 1)
        time.sleep(0.5)  # anything forged would have arrived by now, before the legit ones
        assert [json.loads(m.payload).get("incident_id", "verify") for m in got["tickets"]] == ["inc-legit", "verify"]
        assert [m.topic for m in got["pipeline"]] == [TOPICS.replay_request]
    finally:
        for t in (tickets, pipeline):
            t.stop()


@pytest.mark.integration
def test_ticket_service_on_an_acl_broker_makes_tickets_only_from_the_pipeline(acl_broker, tmp_path: Path,
                                                                                make_incident_event) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'acl.db'}")
    svc = TicketService(db, acl_broker.mqtt("tickets"), TicketsConfig(), client_id="acl-svc")
    stop = threading.Event()
    thread = threading.Thread(target=svc.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert svc.transport.wait_connected(10)
        topic, payload = _incident(make_incident_event, "inc-by-review")
        assert "RC:135" in acl_broker.pub("rv-acct", topic, payload)
        topic, payload = _incident(make_incident_event, "inc-by-pipeline")
        assert "RC:135" not in acl_broker.pub("pl-acct", topic, payload)

        def tickets() -> list[str]:
            with db.transaction() as s:
                return [t.incident_id for t in repo.list_tickets(s)]

        assert _wait(lambda: tickets() == ["inc-by-pipeline"])
        with db.transaction() as s:
            assert repo.list_dead_letters(s) == []  # refused at the broker: nothing to dead-letter
    finally:
        stop.set()
        thread.join(10)
        db.dispose()
