"""Issue 14 item 1: poison messages against a real mosquitto, on SQLite and on PostgreSQL.

Each poison message is followed by a good event: the good one becomes a ticket, the poison one is
dead-lettered with a readable reason naming what is wrong, the service never drops its connection
(no database-failure reconnect), and the same holds after a restart (nothing comes back, poison
queued while it was down is dead-lettered too). Plus a message the database itself refuses while it
answers everything else: tried, dead-lettered with the database's words, the others go on.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from alerts.memory import InMemoryBroker
from alerts.transport import Message
from camera_config.schema import MqttConfig, TicketsConfig
from core.events import IncidentEvent
from core.topics import Topics
from storage import repository as repo
from storage.db import Database
from tickets.service import DB_ATTEMPTS, TicketService

pytestmark = pytest.mark.integration

TOPICS = Topics()
CLIENT_ID = "tickets-poison"


def _wait(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _poison(make_incident_event: Callable[..., IncidentEvent], round_: int) -> list[tuple[str, str, bytes]]:
    """(expected reason, topic, payload) of every poison message of issue 14 item 1."""
    ev = make_incident_event(f"poison-{round_}-0001", 1)
    valid = json.loads(ev.to_json())

    def dumps(**changes: Any) -> bytes:
        return json.dumps({**valid, **changes}).encode()  # Python's json writes NaN / Infinity literals

    long_camera = "c" * 300
    raw_nul = ev.to_json().replace('"G-01"', '"G-\x0001"').encode()
    return [
        ("not a finite number: NaN", ev.topic(), dumps(started_at=math.nan)),
        ("not a finite number: Infinity", ev.topic(), dumps(event_at=math.inf)),
        ("not a finite number: 1e999 is out of the float range", ev.topic(),
         ev.to_json().replace('"event_at":1700000001.0', '"event_at":1e999').encode()),
        ("integer with 31 digits is outside the signed 64-bit range", ev.topic(), dumps(seq=10**30)),
        ("seq: 3000000000 is outside -2147483648..2147483647, the range of column inbox.seq", ev.topic(),
         dumps(seq=3_000_000_000)),
        ("integer with 22 digits is outside the signed 64-bit range", TOPICS.verify_result("cam-1"),
         json.dumps({"ticket_id": 2**70, "request_id": "r", "present": False}).encode()),
        ("ticket_id: 1099511627776 is outside -2147483648..2147483647, the range of column tickets.id",
         TOPICS.verify_result("cam-1"),
         json.dumps({"ticket_id": 2**40, "request_id": "r", "present": False}).encode()),
        ("JSON nested deeper than 16 levels", ev.topic(), b"[" * 30_000 + b"]" * 30_000),
        ("JSON nested deeper than 16 levels", ev.topic(), b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
        ("raw NUL byte at byte", ev.topic(), raw_nul),
        ("NUL character (\\u0000) in the string at grid_cell", ev.topic(), dumps(grid_cell="G-\x0001")),
        ("NUL character (\\u0000) in the string at evidence/links/snapshot", ev.topic(),
         dumps(evidence={"links": {"snapshot": "a\x00b"}})),
        ("camera_id: 300 characters > 64, the limit of column incidents.camera_id",
         TOPICS.incident("illegal_parking", long_camera), dumps(camera_id=long_camera)),
    ]


def _good(make_incident_event: Callable[..., IncidentEvent], round_: int, i: int) -> IncidentEvent:
    return make_incident_event(f"good-{round_}-{i:04d}", 1, zone_id=f"z-{round_}-{i}")


def _publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="poisoner",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class _Running:
    """A TicketService on its own thread; the same client id every time (its persistent session)."""

    def __init__(self, db: Database, port: int, cfg: TicketsConfig | None = None) -> None:
        self.service = TicketService(db, MqttConfig(port=port), cfg or TicketsConfig(), client_id=CLIENT_ID)
        self.first_transport = self.service.transport
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop_flag,), daemon=True)
        self.thread.start()
        assert self.service.transport.wait_connected(15)

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(15)

    def never_reconnected(self) -> bool:
        """Still on the transport it started with: no database-failure reconnect happened."""
        return self.service.transport is self.first_transport and self.service.transport.connected


def _tickets(db: Database) -> set[str]:
    with db.transaction() as s:
        return {t.incident_id for t in repo.list_tickets(s, limit=1_000)}


def _letters(db: Database) -> list[tuple[str, str]]:
    with db.transaction() as s:
        return [(d.topic, d.reason) for d in repo.list_dead_letters(s, limit=1_000)]


def _round(db: Database, client: mqtt.Client, make_incident_event: Callable[..., IncidentEvent],
           round_: int) -> tuple[list[tuple[str, str, bytes]], set[str]]:
    poison = _poison(make_incident_event, round_)
    goods = set()
    for i, (_reason, topic, payload) in enumerate(poison):
        client.publish(topic, payload, qos=1).wait_for_publish(5)
        good = _good(make_incident_event, round_, i)
        client.publish(good.topic(), good.to_json(), qos=1).wait_for_publish(5)
        goods.add(good.incident_id)
    return poison, goods


def _check_dead_letters(db: Database, poison: list[tuple[str, str, bytes]], before: int) -> None:
    letters = _letters(db)
    assert len(letters) == before + len(poison), letters
    reasons = [r for _t, r in letters]
    for expected, topic, _payload in poison:
        assert any(expected in r and t == topic[:512] for t, r in letters), (expected, reasons)
    assert all("\x00" not in r for r in reasons)


def test_poison_messages_are_dead_lettered_and_good_ones_still_make_tickets(
        db: Database, mosquitto, make_incident_event) -> None:
    running = _Running(db, mosquitto.port)
    client = _publisher(mosquitto.port)
    try:
        poison, goods = _round(db, client, make_incident_event, 1)
        assert _wait(lambda: goods <= _tickets(db)), (goods - _tickets(db), _letters(db))
        assert _wait(lambda: len(_letters(db)) >= len(poison))
        _check_dead_letters(db, poison, 0)
        assert _tickets(db) == goods                       # no poison became a ticket
        assert running.never_reconnected()
        assert running.service.counts.get("dead_letter") == len(poison)
        with db.transaction() as s:
            assert all(r.applied_at is not None for r in repo.inbox_rows(s))  # nothing held, nothing stuck

        # restart: what was dead-lettered does not come back; poison queued meanwhile is handled alike
        running.stop()
        poison2, goods2 = _round(db, client, make_incident_event, 2)  # queued in the persistent session
        running = _Running(db, mosquitto.port)
        assert _wait(lambda: goods | goods2 <= _tickets(db)), (goods2 - _tickets(db), _letters(db))
        assert _wait(lambda: len(_letters(db)) >= 2 * len(poison))
        time.sleep(1.0)                                    # a redelivered first round would show by now
        _check_dead_letters(db, poison2, len(poison))
        assert _tickets(db) == goods | goods2
        assert running.never_reconnected()
        later = _good(make_incident_event, 3, 0)           # and it keeps consuming
        client.publish(later.topic(), later.to_json(), qos=1).wait_for_publish(5)
        assert _wait(lambda: later.incident_id in _tickets(db))
    finally:
        running.stop()
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def refusing_db(db: Database) -> Iterator[Database]:
    """The database refuses any incident of camera ``cam-refused`` (a trigger), answers all else."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("CREATE TRIGGER refuse_cam BEFORE INSERT ON incidents "
                                 "WHEN NEW.camera_id = 'cam-refused' BEGIN SELECT RAISE(ABORT, 'refused by "
                                 "trigger'); END")
        else:
            conn.exec_driver_sql("CREATE FUNCTION refuse_cam() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                                 "IF NEW.camera_id = 'cam-refused' THEN RAISE EXCEPTION 'refused by trigger'; "
                                 "END IF; RETURN NEW; END $$")
            conn.exec_driver_sql("CREATE TRIGGER refuse_cam BEFORE INSERT ON incidents FOR EACH ROW "
                                 "EXECUTE FUNCTION refuse_cam()")
    yield db
    with db.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER refuse_cam" + ("" if db.is_sqlite else " ON incidents")))


def test_a_message_the_database_refuses_is_dead_lettered_and_the_rest_go_on(
        refusing_db: Database, make_incident_event) -> None:
    db = refusing_db
    broker = InMemoryBroker()
    service = TicketService(db, MqttConfig(), TicketsConfig(), client_id="tickets-refused",
                            transports=broker.transport)
    acks: list[str] = []
    refused = make_incident_event("inc-refused-1", 1, camera_id="cam-refused")
    good = make_incident_event("inc-good-0001", 1)
    for ev in (refused, good):
        service._on_message(Message(ev.topic(), ev.to_json().encode(), _ack=partial(acks.append, ev.incident_id)))
    assert acks == ["inc-refused-1", "inc-good-0001"]       # both settled: nothing blocks
    assert not service._db_down.is_set()                   # the database answered: no outage
    assert _tickets(db) == {"inc-good-0001"}
    (letter,) = _letters(db)
    assert letter[0] == refused.topic()
    assert "database refused it while answering other statements" in letter[1]
    assert "refused by trigger" in letter[1]
    assert service.counts == {"dead_letter": 1, "applied": 1}
    assert DB_ATTEMPTS > 1  # tried more than once before giving up (a lock timeout would pass)
