"""The whole loop over the in-memory transport, no MQTT: a replay of a shared clip through the real
worker and rules, its events and camera health through the outbox into the ticket service, and a
verification round trip (ticket disposed -> request -> verifier -> result -> ticket moves).

The detector is scripted: a car standing at the right-hand kerb of the street clip (where
tests/pipeline/test_run_publish.py sees the real one) in the first ``CAR_CALLS`` images it is asked
about, nothing after. Counted in calls, not stream time: a worker sheds frames when the reader is
ahead of it (about a third here), so the car stays for 4 s of stream time with no frame shed and
for 16 s if three in four were; either way the incident opens and closes well inside the clip's
37.7 s. The frames, the worker, the tracker, the parking rule, the outbox, the ticket service and
the verifier are the real ones.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from alerts.memory import InMemoryBroker
from alerts.outbox import Outbox
from alerts.transport import OFFLINE, ONLINE, Endpoint, Message
from alerts.verify import Verifier, VerifierService
from camera_config.loader import parse_config
from camera_config.schema import Camera, TicketsConfig
from core.coco import CLASS_ID
from core.fakes import FakeClock, ListSink, ScriptedDetector
from core.topics import Topics
from core.types import Detections, Frame
from patrol.commands.run import FanOutSink
from pipeline.worker import PatrolWorker
from rules.analyzer import camera_analyzer
from storage import repository as repo
from storage.db import Database, open_database
from tickets.desk import transition
from tickets.service import TicketService

CLIP = "vehicle_counting_input_video"  # 640 x 352, 37.7 s
KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 2, "occlusion_grace_s": 3, "close_grace_s": 3,
        "polygon": [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}
CAR_BOX = (590.0, 160.0, 638.0, 192.0)  # ground point (0.96, 0.55): in the kerb zone
CAR_CALLS = 8
TOPICS = Topics()
WAIT_S = 30.0


def _wait(what: str, cond: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _car() -> Detections:
    return Detections(np.array([CAR_BOX], np.float32), np.array([0.8], np.float32),
                      np.array([CLASS_ID["car"]], np.int32))


def _grab(camera: Camera, _duration_s: float) -> list[Frame]:
    """Four frames of the camera 'now' (the verifier's grabber; the detector decides what is in them)."""
    clock = FakeClock(start=time.time(), fps=2.0, camera_id=camera.id, size=(640, 352))
    return [clock.frame(i / 2) for i in range(4)]


def _ticket(db: Database) -> Any:
    with db.transaction() as s:
        (ticket,) = repo.list_tickets(s)
        return ticket


def _state_is(db: Database, state: str) -> Callable[[], bool]:
    return lambda: bool(_ticket(db).state == state)


def test_replay_health_and_verification_over_the_in_memory_transport(tmp_path: Path, asset_path: Any) -> None:
    broker = InMemoryBroker()
    site = parse_config({
        "site": {"name": "bus e2e", "timezone": "UTC"},
        "cameras": [{"id": "street", "url": str(asset_path(CLIP)), "grid_cell": "JD-0101", "analysis_fps": 2,
                     "zones": [KERB]}],
        "mqtt": {"client_id": "e2e"},
        "database": {"url": f"sqlite:///{tmp_path / 'pipeline.db'}"}})
    ticket_db = open_database(f"sqlite:///{tmp_path / 'tickets.db'}")

    seen: list[Message] = []  # everything on the bus, as a plain (non-shared) subscriber sees it
    watcher = broker.transport(Endpoint("e2e-watcher"))
    watcher.subscribe(f"{TOPICS.prefix}/#", seen.append)
    watcher.start()

    tickets = TicketService(ticket_db, site.mqtt, TicketsConfig(), client_id="tickets-e2e",
                            transports=broker.transport)
    # the verifier's camera still shows the car for the first re-check, not for the second
    verify_detector = ScriptedDetector(lambda i: _car() if i < 4 else Detections.empty())
    verifier = VerifierService(site, client_id="verifier-e2e", transports=broker.transport,
                               verifier=Verifier(site, detector_factory=lambda _c: verify_detector.detect,
                                                 grabber=_grab))
    stop = threading.Event()
    threads = [threading.Thread(target=tickets.run, args=(stop,), daemon=True),
               threading.Thread(target=verifier.run, args=(stop,), daemon=True)]
    for thread in threads:
        thread.start()
    assert tickets.transport.wait_connected(10) and verifier.transport.wait_connected(10)

    listed = ListSink()
    try:
        with Outbox.from_site(site, "pipe-e2e", transports=broker.transport) as outbox:
            worker = PatrolWorker(site, analyzer_factory=camera_analyzer,
                                  realtime=False, sink=FanOutSink(outbox.sink, listed),
                                  detector_loader=lambda _m, _s: ScriptedDetector(
                                      lambda i: _car() if i < CAR_CALLS else Detections.empty()))
            worker.run()
            assert broker.retained()[TOPICS.availability("pipe-e2e")] == ONLINE

            # 1. the replay's events: every one applied by the ticket service, once, in order
            kinds = [(e.type, e.event) for e in listed.events]
            assert kinds[0] == ("illegal_parking", "opened") and kinds[-1] == ("illegal_parking", "closed"), kinds
            assert len({e.incident_id for e in listed.events}) == 1

            def applied() -> int:
                with ticket_db.transaction() as s:
                    return sum(r.applied_at is not None for r in repo.inbox_rows(s))

            _wait("every event applied", lambda: applied() == len(listed.events))
            with ticket_db.transaction() as s:
                rows = repo.inbox_rows(s)
                assert sorted((r.incident_id, r.seq) for r in rows) == sorted(
                    (e.incident_id, e.seq) for e in listed.events)
            on_bus = [m for m in seen if TOPICS.parse_incident(m.topic)]
            assert [m.payload for m in on_bus] == [e.to_json().encode() for e in listed.events]
            assert {m.topic for m in on_bus} == {"patrol/v1/incidents/illegal_parking/street"}

            # 2. camera health: reported through the sink, retained for whoever looks later
            assert [(r.camera_id, r.state) for r in listed.health] == [("street", "online")]
            late: list[Message] = []
            looker = broker.transport(Endpoint("e2e-late"))
            looker.subscribe(TOPICS.health(), late.append)
            looker.start()
            _wait("the retained health state", lambda: bool(late))
            looker.stop()
            assert late[0].topic == "patrol/v1/health/street" and late[0].retained
            assert json.loads(late[0].payload)["state"] == "online"

            # 3. verification: the car is still there (back to dispatched), then gone (verified)
            ticket = _ticket(ticket_db)
            assert ticket.state == "accepted" and ticket.zone_id == "kerb-right"
            for expected in ("dispatched", "verified"):
                with ticket_db.transaction() as s:
                    if repo.get_ticket(s, ticket.id).state != "dispatched":
                        transition(s, ticket.id, "dispatched", actor="op", reason="crew sent")
                    transition(s, ticket.id, "disposed", actor="crew", reason="done", topics=TOPICS)
                tickets.publisher.wake()
                _wait(f"ticket {expected}", _state_is(ticket_db, expected))
            requests = [json.loads(m.payload) for m in seen if m.topic == TOPICS.verify_request("street")]
            results = [json.loads(m.payload) for m in seen if m.topic == TOPICS.verify_result("street")]
            assert [r["request_id"] for r in requests] == [r["request_id"] for r in results]
            assert [(r["present"], r["frames"]) for r in results] == [(True, 4), (False, 4)]
            assert verifier.answered == 2
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        watcher.stop()
        ticket_db.dispose()
    assert broker.retained()[TOPICS.availability("pipe-e2e")] == OFFLINE  # a clean stop says so
    assert broker.retained()[TOPICS.availability("tickets-e2e")] == OFFLINE
