"""Nothing is lost when the database refuses writes (issue 14 item 2), on real SQLite and PostgreSQL.

The database is made unwritable mid-run for real: SQLite by making its file and its WAL immutable
(``chattr +i``: writes fail with "disk I/O error" / "readonly database"); PostgreSQL by
``ALTER DATABASE ... SET default_transaction_read_only`` and ending the sessions, so every new one
is read-only. Meanwhile events keep coming: they are held in order (memory, then the spill file),
the failure is loud (ERROR naming the database, readiness, metrics), and once the database takes
writes again every event produced is committed exactly once, in order, and delivered through a
real mosquitto.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from alerts import outbox as outbox_module
from alerts.mqtt import MqttTransport
from alerts.outbox import OutboxPublisher, OutboxSink
from alerts.transport import Endpoint
from camera_config.schema import MqttConfig
from pipeline.worker import EventsAtRisk
from storage.db import Database, open_database
from storage.models import OutboxRow

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr (e2fsprogs) not installed")]


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *[str(p) for p in paths if p.exists()]], check=True, capture_output=True)


@contextlib.contextmanager
def unwritable(url: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """The database at ``url`` refuses every write inside the block (really, not mocked)."""
    if url.startswith("sqlite"):
        path = Path(sa.engine.make_url(url).database or "")
        files = (path, path.with_name(path.name + "-wal"))  # never the -shm: it is mmapped (SIGBUS)
        _chattr("+i", *files)
        try:
            yield
        finally:
            _chattr("-i", *files)
        return
    pg = request.getfixturevalue("postgres_server")
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(pg.url, isolation_level="AUTOCOMMIT")

    def set_read_only(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                                 f'{"on" if on else "off"}'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
    set_read_only(True)
    try:
        yield
    finally:
        set_read_only(False)
        admin.dispose()


def _wait(cond: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _committed(db: Database) -> list[tuple[str, int | None]]:
    """(incident id, seq) of every committed event in outbox order."""
    with db.transaction() as s:
        return [(r.incident_id, r.seq) for r in s.scalars(sa.select(OutboxRow).order_by(OutboxRow.id))
                if r.incident_id is not None]


def _events(make: Any, n: int, start: int = 1) -> list[Any]:
    """``n`` events: incidents inc-dur-0001.. each opened, in production order."""
    return [make(f"inc-dur-{i:04d}", 1) for i in range(start, start + n)]


def test_events_are_held_while_the_database_refuses_writes_and_none_is_lost(
        db_url: str, request: pytest.FixtureRequest, mosquitto: Any, make_incident_event: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    db = open_database(db_url)
    delivered: list[tuple[str, int]] = []
    lock = threading.Lock()
    listener = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="durability-listener")
    listener.on_connect = lambda c, *_: c.subscribe("patrol/v1/incidents/#", qos=1)

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        p = json.loads(msg.payload)
        with lock:
            delivered.append((p["incident_id"], p["seq"]))
    listener.on_message = on_message
    listener.connect("127.0.0.1", mosquitto.port)
    listener.loop_start()
    transport = MqttTransport(MqttConfig(port=mosquitto.port), Endpoint("durability-pipe"))
    transport.start()
    publisher = OutboxPublisher(db, transport, idle_poll_s=0.2)
    publisher.start()
    spill = tmp_path / "spill" / "outbox-test.jsonl"
    sink = OutboxSink(db, publisher=publisher, spill_path=spill, memory_events=5, retry_s=(0.1, 0.5))
    produced = _events(make_incident_event, 30)
    try:
        assert _wait(lambda: transport.connected, 15)
        sink.publish(produced[:3])
        assert sink.held_events == 0 and outbox_module.readiness() == (True, [])
        caplog.set_level(logging.ERROR, logger="alerts.outbox")
        with unwritable(db_url, request):
            t0 = time.monotonic()
            for ev in produced[3:23]:  # one batch each, as the analysis thread hands them over
                sink.publish([ev])
            assert sink.held_events == 20, "every event is held, none dropped"
            assert spill.exists() and sink.backlog.spill is not None and sink.backlog.spill.events == 15
            ready, reasons = outbox_module.readiness()
            assert not ready and "refuses writes" in reasons[0] and "20 event(s) held" in reasons[0]
            metrics = {m.name: m.samples[0].value for m in sink.collector().collect()}
            assert metrics["patrol_outbox_held_events"] == 20 and metrics["patrol_outbox_ready"] == 0
            assert metrics["patrol_outbox_commit_failures"] >= 1
            errors = [r for r in caplog.records if r.levelno == logging.ERROR and "cannot commit" in r.getMessage()]
            assert errors and "database" in errors[0].getMessage()
            assert (sa.engine.make_url(db_url).database or "x").split("/")[-1] in errors[0].getMessage()
            held_s = time.monotonic() - t0
            time.sleep(1.0)  # the retry thread keeps failing meanwhile
            assert sink.held_events == 20
        sink.publish(produced[23:])  # after the outage: queued behind what is held, never ahead of it
        assert _wait(lambda: sink.held_events == 0, 30), sink.not_ready()
        # ready once the retry thread has also marked the outage over (just after its last commit)
        assert _wait(lambda: outbox_module.readiness() == (True, []), 10), outbox_module.readiness()
        assert not spill.exists(), "the spill file is removed once all of it is committed"
        want = [(e.incident_id, e.seq) for e in produced]
        assert _committed(db) == want, "every produced event committed exactly once, in order"
        assert _wait(lambda: len(set(delivered)) >= len(want), 30)
        with lock:  # at least once: rows sent while their mark could not be committed go again
            assert list(dict.fromkeys(delivered)) == want, "delivered through the broker in the same order"
        assert held_s < 60
    finally:
        sink.close()
        publisher.stop(1)
        transport.stop()
        listener.loop_stop()
        listener.disconnect()
        db.dispose()


def test_what_is_held_at_stop_is_spilled_and_committed_by_the_next_start(
        db_url: str, request: pytest.FixtureRequest, make_incident_event: Any, tmp_path: Path) -> None:
    db = open_database(db_url)
    spill = tmp_path / "outbox-test.jsonl"
    produced = _events(make_incident_event, 8)
    try:
        with unwritable(db_url, request):
            sink = OutboxSink(db, spill_path=spill, memory_events=3, retry_s=(0.1, 0.5))
            for ev in produced:
                sink.publish([ev])
            sink.close()  # the run stops while the database is still refusing writes
            assert sink.lost_events == 0
            lines = [json.loads(line) for line in spill.read_text(encoding="utf-8").splitlines()]
            assert [json.loads(e)["incident_id"] for item in lines for e in item["events"]] == \
                [e.incident_id for e in produced], "memory first, then what was spilled: production order"
        assert _committed(db) == []
        again = OutboxSink(db, spill_path=spill, retry_s=(0.1, 0.5))  # the next start
        try:
            assert again.drain() and again.held_events == 0
        finally:
            again.close()
        assert _committed(db) == [(e.incident_id, e.seq) for e in produced]
        assert not spill.exists()
    finally:
        db.dispose()


def test_events_neither_committed_nor_spilled_stop_the_pipeline_loudly(
        db_url: str, request: pytest.FixtureRequest, make_incident_event: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    db = open_database(db_url)
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    produced = _events(make_incident_event, 4)
    try:
        with unwritable(db_url, request):
            _chattr("+i", spill_dir)
            try:
                sink = OutboxSink(db, spill_path=spill_dir / "outbox.jsonl", memory_events=2, retry_s=(0.1, 0.5))
                sink.publish(produced[:2])
                with pytest.raises(EventsAtRisk, match=r"cannot be written.*stopping before any is lost"):
                    sink.publish(produced[2:3])
                assert sink.held_events == 3, "kept in memory over the bound rather than dropped"
                assert "stopping" in (sink.not_ready() or "")
                caplog.set_level(logging.CRITICAL, logger="alerts.outbox")
                sink.close()
                assert sink.lost_events == 3
                assert any("neither committed" in r.getMessage() for r in caplog.records)
            finally:
                _chattr("-i", spill_dir)
    finally:
        db.dispose()


def test_a_stopped_postgresql_server_holds_events_until_it_is_back(own_postgres: Any, make_incident_event: Any,
                                                                    tmp_path: Path) -> None:
    db = open_database(own_postgres.url)
    sink = OutboxSink(db, spill_path=tmp_path / "outbox.jsonl", memory_events=4, retry_s=(0.1, 0.5))
    produced = _events(make_incident_event, 12)
    try:
        sink.publish(produced[:2])
        own_postgres.stop()  # the server goes away: connections are refused
        for ev in produced[2:10]:
            sink.publish([ev])
        assert sink.held_events == 8 and sink.not_ready() is not None
        own_postgres.start()
        sink.publish(produced[10:])
        assert _wait(lambda: sink.held_events == 0, 60), sink.not_ready()
        assert _committed(db) == [(e.incident_id, e.seq) for e in produced]
    finally:
        sink.close()
        db.dispose()


def test_a_torn_last_spill_line_is_reported_and_the_complete_ones_are_committed(
        db: Database, make_incident_event: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spill = tmp_path / "outbox.jsonl"
    produced = _events(make_incident_event, 3)
    whole = [json.dumps({"kind": "events", "events": [e.to_json()]}) + "\n" for e in produced[:2]]
    spill.write_text("".join(whole) + json.dumps({"kind": "events", "events": [produced[2].to_json()]})[:40],
                     encoding="utf-8")  # a crash in the middle of the third write
    caplog.set_level(logging.WARNING, logger="alerts.outbox")
    sink = OutboxSink(db, spill_path=spill, retry_s=(0.1, 0.5))
    try:
        assert sink.drain() and sink.held_events == 0
    finally:
        sink.close()
    assert _committed(db) == [(e.incident_id, e.seq) for e in produced[:2]]
    assert any("left in the spill file" in r.getMessage() for r in caplog.records)
    assert any("torn line" in r.getMessage() for r in caplog.records)
    assert not spill.exists()
