"""A failing evidence store never costs the event (issue 14 item 2).

The evidence store is made read-only for real (``chattr +i`` on its folder: creating an incident's
folder raises EPERM, even as root). The street clip runs through the real worker, rules, evidence
recorder, outbox and ticket service over the in-memory transport, with a scripted car at the kerb
(as in tests/alerts/test_bus_end_to_end.py): the ``opened`` event still goes out, says its evidence
failed and carries no links, the ticket is made, the ``closed`` event follows and is applied, and no
event waits for a predecessor (so nothing asks for replays over and over).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alerts.memory import InMemoryBroker
from alerts.outbox import Outbox
from alerts.transport import Endpoint, Message
from camera_config.loader import parse_config
from camera_config.schema import TicketsConfig
from core.coco import CLASS_ID
from core.fakes import ListSink, ScriptedDetector
from core.topics import Topics
from core.types import Detections
from evidence.attach import build_recorder, drain, packet_listeners, with_evidence
from patrol.commands.run import FanOutSink
from pipeline.worker import PatrolWorker
from rules.analyzer import camera_analyzer
from storage import repository as repo
from storage.db import open_database
from tickets.service import TicketService

pytestmark = pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr (e2fsprogs) not installed")

CLIP = "vehicle_counting_input_video"
KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 2, "occlusion_grace_s": 3, "close_grace_s": 3,
        "polygon": [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}
CAR_BOX = (590.0, 160.0, 638.0, 192.0)
TOPICS = Topics()


def _car() -> Detections:
    return Detections(np.array([CAR_BOX], np.float32), np.array([0.8], np.float32),
                      np.array([CLASS_ID["car"]], np.int32))


def _wait(what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_read_only_evidence_store_still_opens_tickets_and_closes_incidents(tmp_path: Path, asset_path: Any) -> None:
    evidence_dir = tmp_path / "evidence"
    evidence_dir.mkdir()
    site = parse_config({
        "site": {"name": "evidence failure", "timezone": "UTC"},
        "cameras": [{"id": "street", "url": str(asset_path(CLIP)), "grid_cell": "JD-0101", "analysis_fps": 2,
                     "zones": [KERB]}],
        "mqtt": {"client_id": "evfail"},
        "evidence": {"dir": str(evidence_dir), "pre_roll_s": 1, "post_roll_s": 1},
        "database": {"url": f"sqlite:///{tmp_path / 'pipeline.db'}"}})
    broker = InMemoryBroker()
    seen: list[Message] = []
    watcher = broker.transport(Endpoint("evfail-watcher"))
    watcher.subscribe(f"{TOPICS.prefix}/#", seen.append)
    watcher.start()
    ticket_db = open_database(f"sqlite:///{tmp_path / 'tickets.db'}")
    tickets = TicketService(ticket_db, site.mqtt, TicketsConfig(), client_id="tickets-evfail",
                            transports=broker.transport)
    stop = threading.Event()
    thread = threading.Thread(target=tickets.run, args=(stop,), daemon=True)
    thread.start()
    assert tickets.transport.wait_connected(10)
    listed = ListSink()
    subprocess.run(["chattr", "+i", str(evidence_dir)], check=True)
    try:
        recorder, writer = build_recorder(site)
        with Outbox.from_site(site, "pipe-evfail", transports=broker.transport) as outbox:
            worker = PatrolWorker(site, analyzer_factory=with_evidence(camera_analyzer, recorder),
                                  packet_listeners=packet_listeners(recorder), realtime=False,
                                  sink=FanOutSink(outbox.sink, listed),
                                  detector_loader=lambda _m, _s: ScriptedDetector(
                                      lambda i: _car() if i < 8 else Detections.empty()))
            worker.run()
            drain(recorder, writer, ["street"])
            kinds = [(e.type, e.event) for e in listed.events]
            assert kinds[0] == ("illegal_parking", "opened") and kinds[-1] == ("illegal_parking", "closed"), kinds
            opened = listed.events[0]
            assert opened.evidence.links == {}, "no links to files that were never written"
            assert opened.evidence.error and "cannot create the evidence folder" in opened.evidence.error
            assert "Operation not permitted" in opened.evidence.error

            def applied() -> int:
                with ticket_db.transaction() as s:
                    return sum(r.applied_at is not None for r in repo.inbox_rows(s))
            _wait("every event applied by the ticket service", lambda: applied() == len(listed.events))
            with ticket_db.transaction() as s:
                (ticket,) = repo.list_tickets(s)
                assert ticket.incident_id == opened.incident_id and ticket.state == "accepted"
                assert all(r.applied_at is not None for r in repo.inbox_rows(s)), "nothing held for a gap"
                incident = repo.get_incident(s, opened.incident_id)
                assert incident.state == "closed"
            time.sleep(1.0)
            replays = [m for m in seen if m.topic == TOPICS.replay_request]
            assert len(replays) <= 1, "one replay request at connect at most, never a loop of them"
    finally:
        subprocess.run(["chattr", "-i", str(evidence_dir)], check=True)
        stop.set()
        thread.join(15)
        watcher.stop()
        ticket_db.dispose()
    assert list(evidence_dir.iterdir()) == []
