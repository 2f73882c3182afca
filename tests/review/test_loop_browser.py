"""Issue 15 acceptance 2 and the loop's part of 3: the whole loop in headless Chromium on a real replay.

The pipeline of tests/review/test_browser.py (tests/review/street_run.py, recorded once a session:
the first 18 s of vehicle_counting_input_video.mp4, two no_parking zones: kerb-right, where a silver
car stands the whole clip, and far-side, where a queue of cars waits ~20 s and then drives off) raises
the incidents; the ticket service's desk
(:func:`tickets.desk.apply_event`, in-process) makes their tickets from the recorded events. In the
browser (zh-CN) the operator confirms both -> dispatched; the department member sees them on
``/department`` and marks each disposed with a note. The review page's outbox publisher sends the
verify requests to a real mosquitto; the real :class:`alerts.verify.VerifierService` answers there,
running YOLOX-Nano and the zone check on real frames of the clip from 28 s on (measured: far-side
0/8 frames with a car, kerb-right 8/8); the results are applied by the real
:class:`tickets.service.TicketService` (``tickets.archive_verified: true``) on the same broker.
far-side: verified -> archived, every step's time on the ticket page; kerb-right: back to dispatched with the evidence.
Screenshots of the department view, a ticket and the report at 1440x900 and 390x844 in zh-CN go to
the test's tmp dir (paths printed); at 390 px nothing is wider than the screen.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from browser_kit import SIZES, log_in, screens
from sqlalchemy import select
from street_run import street_site
from test_browser import OPERATOR, PASSWORD, browser, review_site  # noqa: F401

from alerts.verify import Verifier, VerifierService
from camera_config.schema import Camera, MqttConfig, TicketsConfig
from core.events import IncidentEvent
from core.types import Frame
from patrol.commands.replay import clip_frames
from review.server import add_operator
from storage import repository as repo
from storage.models import Incident, IncidentEventRow
from tickets.desk import apply_event, ticket_view
from tickets.service import TicketService

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MEMBER, MEMBER_PW = "street-team", "dispose-demo-pw"
GONE_FROM_S = 28.0


def test_the_whole_loop_in_chromium_on_a_real_replay(review_site: Any, browser: Any, tmp_path: Path,  # noqa: F811
                                                     asset_path: Any, mosquitto: Any) -> None:
    base, db, _listener, _evidence = review_site
    clip = asset_path("vehicle_counting_input_video")
    site = street_site(tmp_path, clip, mosquitto.port)
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
    service = TicketService(db, MqttConfig(port=mosquitto.port), TicketsConfig(archive_verified=True),
                            client_id="loop-tickets")
    stop = threading.Event()
    threads = [threading.Thread(target=verifier.run, args=(stop,), daemon=True),
               threading.Thread(target=service.run, args=(stop,), daemon=True)]
    for thread in threads:
        thread.start()
    try:
        assert verifier.transport.wait_connected(10) and service.transport.wait_connected(10)
        context = browser.new_context(viewport=SIZES["1440x900"])
        page = context.new_page()
        # the operator confirms both incidents -> their tickets are dispatched
        log_in(page, base, OPERATOR, PASSWORD, "/queue", lang="zh-CN")
        for zone in ("far-side", "kerb-right"):
            page.goto(f"{base}/incidents/{incidents[zone]}")
            page.click("#confirm")
            page.wait_for_load_state()
        with db.transaction() as s:
            assert {repo.get_ticket(s, t).state for t in tickets.values()} == {"dispatched"}
        context.clear_cookies()
        # the department member's view shows both; each is marked disposed with a note
        log_in(page, base, MEMBER, MEMBER_PW, "/department", lang="zh-CN")
        page.goto(f"{base}/department")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        listed = page.locator("#dispatched li.ticket")
        assert sorted(int(listed.nth(i).get_attribute("data-ticket") or 0) for i in range(listed.count())) == \
            sorted(tickets.values())
        assert "违章停车" in page.inner_text("#dispatched") and "0510" in page.inner_text("#dispatched")
        screens(page, "loop-department", tmp_path)
        for zone in ("far-side", "kerb-right"):
            page.goto(f"{base}/tickets/{tickets[zone]}")
            page.fill("form.dispose input[name=note]", "已劝离并拖走车辆")
            page.click("form.dispose button[type=submit]")
            page.wait_for_url(f"{base}/tickets/{tickets[zone]}")
        # the verifier re-checks on the clip's frames; the ticket service applies its answers from the broker
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with db.transaction() as s:
                states = {zone: repo.get_ticket(s, t).state for zone, t in tickets.items()}
            if states == {"far-side": "archived", "kerb-right": "dispatched"}:
                break
            time.sleep(0.2)
        with db.transaction() as s:
            checks = {zone: [json.loads(h.evidence or "{}") for h in repo.ticket_history(s, t)
                             if h.actor == "verifier"] for zone, t in tickets.items()}
        print(f"verify results: { {z: [(c['frames_present'], c['frames']) for c in cs] for z, cs in checks.items()} }")
        assert states == {"far-side": "archived", "kerb-right": "dispatched"}, states
        assert [c["frames_present"] for c in checks["far-side"]] == [0]
        assert len(checks["kerb-right"]) == 1 and checks["kerb-right"][0]["frames_present"] >= 6

        page.goto(f"{base}/tickets/{tickets['far-side']}")
        assert page.get_attribute("#ticket-state", "data-state") == "archived"
        for step in ("accepted", "dispatched", "disposed", "verified", "archived"):
            cell = page.inner_text(f"#timings tr[data-step={step}] td:nth-child(2)")
            assert cell.strip() not in ("", "–"), (step, cell)
        screens(page, "loop-ticket", tmp_path)
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
        screens(page, "loop-report", tmp_path)
        context.close()
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
