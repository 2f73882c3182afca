"""Issue 15 acceptance 2 and the loop's part of 3: the whole loop in headless Chromium on a real replay.

The pipeline of tests/review/test_browser.py (the first 18 s of vehicle_counting_input_video.mp4, two
no_parking zones: kerb-right, where a silver car stands the whole clip, and far-side, where a queue of
cars waits ~20 s and then drives off) raises the incidents; the ticket service's desk
(:func:`tickets.desk.apply_event`, in-process) makes their tickets from the recorded events. In the
browser (zh-CN) the operator confirms both -> dispatched; the department member sees them on
``/department`` and marks each disposed with a note. The review page's outbox publisher sends the
verify requests to a real mosquitto; the real :class:`alerts.verify.VerifierService` answers there,
running YOLOX-Nano and the zone check on real frames of the clip from 28 s on (measured: far-side
0/8 frames with a car, kerb-right 8/8); the results are applied with
``apply_verify_result(archive=True)`` by a subscriber on the same broker. far-side: verified ->
archived, every step's time on the ticket page; kerb-right: back to dispatched with the evidence.
Screenshots of the department view, a ticket and the report at 1440x900 and 390x844 in zh-CN go to
the test's tmp dir (paths printed); at 390 px nothing is wider than the screen.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from test_browser import OPERATOR, PASSWORD, SIZES, _site, browser, review_site, wait_js  # noqa: F401

from alerts.verify import Verifier, VerifierService
from camera_config.schema import Camera, TicketsConfig
from core.events import IncidentEvent
from core.types import Frame
from patrol.commands.replay import clip_frames
from review.server import add_operator
from storage import repository as repo
from storage.db import Database
from storage.models import Incident, IncidentEventRow
from tickets.desk import apply_event, apply_verify_result, ticket_view

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MEMBER, MEMBER_PW = "street-team", "dispose-demo-pw"
GONE_FROM_S = 28.0


class ResultApplier:
    """The ticket side of step 5 on the broker: verify results in, applied (a verified ticket archived)."""

    def __init__(self, port: int, db: Database) -> None:
        self.db, self.applied, self.errors = db, [], []  # type: ignore[var-annotated]
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="loop-results")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _on_connect(self, client: Any, *_: Any) -> None:
        client.subscribe("patrol/v1/verify/result/#", qos=1)
        self.ready.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            result = json.loads(msg.payload)
            self.applied.append((result["ticket_id"], apply_verify_result(
                self.db, result, camera_id=msg.topic.rsplit("/", 1)[1], archive=True), result))
        except Exception as exc:
            self.errors.append(repr(exc))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _screens(page: Any, name: str, out: Path) -> None:
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        time.sleep(0.3)
        path = out / f"loop-{name}-zh-CN-{size}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        if viewport["width"] == 390:
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{name} is {width} px wide at 390 px"
    page.set_viewport_size(SIZES["1440x900"])


def _login(page: Any, base: str, user: str, password: str, then: str) -> None:
    page.goto(f"{base}/login?lang=zh-CN&next={then}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")
    page.wait_for_load_state()


def test_the_whole_loop_in_chromium_on_a_real_replay(review_site: Any, browser: Any, tmp_path: Path,  # noqa: F811
                                                     asset_path: Any, mosquitto: Any) -> None:
    base, db, _listener, _evidence = review_site
    clip = asset_path("vehicle_counting_input_video")
    site = _site(tmp_path, clip, mosquitto.port)
    # tickets from the recorded incident events, as the ticket service makes them
    with db.transaction() as s:
        incidents = {i.zone_id: i.id for i in s.scalars(select(Incident).where(Incident.type == "illegal_parking"))}
        events = [r.payload for r in s.scalars(select(IncidentEventRow).order_by(IncidentEventRow.incident_id,
                                                                                  IncidentEventRow.seq))]
    assert set(incidents) == {"kerb-right", "far-side"}, incidents
    cfg = TicketsConfig()
    for payload in events:
        ev = IncidentEvent.model_validate_json(payload)
        apply_event(db, cfg, ev, ev.topic())
    with db.transaction() as s:
        tickets: dict[str, int] = {}
        for zone, inc in incidents.items():
            ticket_id = repo.get_incident(s, inc).ticket_id
            assert ticket_id is not None, zone
            tickets[zone] = ticket_id
        department = repo.get_ticket(s, tickets["far-side"]).department  # tickets.default_department
        assert {repo.get_ticket(s, t).state for t in tickets.values()} == {"accepted"}
    add_operator(db, MEMBER, MEMBER_PW, role="department", department=department)

    camera: Camera = site.cameras[0]
    frames: list[Frame] = [f for f in clip_frames(clip, camera, 2.0, time.time()) if f.pts >= GONE_FROM_S]

    def grabber(_camera: Camera, duration_s: float) -> list[Frame]:
        return [f for f in frames if f.pts < GONE_FROM_S + duration_s]

    verifier = VerifierService(site, client_id="loop-verifier", verifier=Verifier(site, grabber=grabber))
    applier = ResultApplier(mosquitto.port, db)
    stop = threading.Event()
    thread = threading.Thread(target=verifier.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert verifier.transport.wait_connected(10)
        context = browser.new_context(viewport=SIZES["1440x900"])
        page = context.new_page()
        # the operator confirms both incidents -> their tickets are dispatched
        _login(page, base, OPERATOR, PASSWORD, "/queue")
        for zone in ("far-side", "kerb-right"):
            page.goto(f"{base}/incidents/{incidents[zone]}")
            page.click("#confirm")
            page.wait_for_load_state()
        with db.transaction() as s:
            assert {repo.get_ticket(s, t).state for t in tickets.values()} == {"dispatched"}
        context.clear_cookies()
        # the department member's view shows both; each is marked disposed with a note
        _login(page, base, MEMBER, MEMBER_PW, "/department")
        page.goto(f"{base}/department")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        listed = page.locator("#dispatched li.ticket")
        assert sorted(int(listed.nth(i).get_attribute("data-ticket") or 0) for i in range(listed.count())) == \
            sorted(tickets.values())
        assert "违章停车" in page.inner_text("#dispatched") and "0510" in page.inner_text("#dispatched")
        _screens(page, "department", tmp_path)
        for zone in ("far-side", "kerb-right"):
            page.goto(f"{base}/tickets/{tickets[zone]}")
            page.fill("form.dispose input[name=note]", "已劝离并拖走车辆")
            page.click("form.dispose button[type=submit]")
            page.wait_for_url(f"{base}/tickets/{tickets[zone]}")
        # the verifier re-checks on the clip's frames; the results come back over the broker
        deadline = time.monotonic() + 120
        while len(applier.applied) < 2 and not applier.errors and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not applier.errors, applier.errors
        outcome = {ticket_id: (state, r["frames_present"], r["frames"]) for ticket_id, state, r in applier.applied}
        print(f"verify results: {outcome}")
        assert outcome[tickets["far-side"]][0] == "archived" and outcome[tickets["far-side"]][1] == 0
        assert outcome[tickets["kerb-right"]][0] == "dispatched" and outcome[tickets["kerb-right"]][1] >= 6

        page.goto(f"{base}/tickets/{tickets['far-side']}")
        assert page.get_attribute("#ticket-state", "data-state") == "archived"
        for step in ("accepted", "dispatched", "disposed", "verified", "archived"):
            cell = page.inner_text(f"#timings tr[data-step={step}] td:nth-child(2)")
            assert cell.strip() not in ("", "–"), (step, cell)
        _screens(page, "ticket", tmp_path)
        page.goto(f"{base}/tickets/{tickets['kerb-right']}")
        assert page.get_attribute("#ticket-state", "data-state") == "dispatched"
        with db.transaction() as s:
            back = repo.ticket_history(s, tickets["kerb-right"])[-1]
            assert (back.from_state, back.to_state, back.actor) == ("disposed", "dispatched", "verifier")
            assert json.loads(back.evidence or "{}")["boxes"], "the evidence: the boxes still seen"
        page.goto(f"{base}/department")
        assert page.locator(f"#dispatched li[data-ticket='{tickets['kerb-right']}']").count() == 1
        assert page.locator(f"#recent li[data-ticket='{tickets['far-side']}']").count() == 1
        page.goto(f"{base}/report")
        with db.transaction() as s:  # every ticket of the run (other incidents of the clip made their own)
            made = [t for t in repo.list_tickets(s) if t.department == department]
            overdue = sum(ticket_view(s, t)["timings"]["overdue"] for t in made)
        print(f"tickets of the run: {[(t.id, t.type, t.zone_id, t.state) for t in made]}")
        row = page.locator(f"#report tr[data-department='{department}']")
        assert row.count() == 1 and row.get_attribute("data-count") == str(len(made)) and len(made) >= 2
        assert row.get_attribute("data-overdue") == str(overdue)
        _screens(page, "report", tmp_path)
        context.close()
    finally:
        stop.set()
        thread.join(15)
        applier.close()
