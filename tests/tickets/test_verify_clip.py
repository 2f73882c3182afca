"""Step 5 end to end on real footage: disposal -> verify request over MQTT -> the verifier runs the
detector and the zone check on the camera's frames -> the ticket service applies the result.

vehicle_counting_input_video.mp4 (640x352) has a dark car parked at the right kerb for the whole
clip (box about x 355-416, y 134-163) and an empty pavement on the lower left.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from alerts.verify import Verifier, VerifierService, grab_frames
from camera_config.schema import MqttConfig, SiteConfig, TicketsConfig
from rules.checks import check_zone
from rules.registry import zone_check
from storage import repository as repo
from storage.db import Database
from tickets.desk import apply_event, transition
from tickets.service import TicketService

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARKED = ((0.54, 0.40), (0.70, 0.40), (0.70, 0.52), (0.54, 0.52))   # around the parked car's wheels
EMPTY = ((0.25, 0.72), (0.40, 0.72), (0.40, 0.95), (0.25, 0.95))    # the pavement, lower left


def _site(clip: str, port: int) -> SiteConfig:
    return SiteConfig.model_validate({
        "site": {"name": "verify test"},
        "mqtt": {"port": port},
        "cameras": [{"id": "street-1", "url": clip, "grid_cell": "G-07", "analysis_fps": 2,
                     "zones": [{"id": "kerb-parked", "type": "no_parking", "polygon": PARKED},
                               {"id": "pavement-empty", "type": "no_parking", "polygon": EMPTY}]}]})


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_zone_check_on_the_clip(asset_path) -> None:  # type: ignore[no-untyped-def]
    site = _site(str(asset_path("vehicle_counting_input_video")), 1883)
    camera = site.cameras[0]
    frames = grab_frames(camera, 4.0)
    assert len(frames) >= 8
    from alerts.verify import _load_detect

    detect = _load_detect(camera)
    parked = check_zone(frames, detect, zone_check(camera.zones[0], 0.3))
    empty = check_zone(frames, detect, zone_check(camera.zones[1], 0.3))
    print(f"\nparked zone: {parked['frames_present']}/{parked['frames']} frames; "
          f"empty zone: {empty['frames_present']}/{empty['frames']}")
    assert parked["present"] and parked["boxes"][0]["label"] == "car"
    assert not empty["present"] and empty["frames_present"] == 0


def test_verification_loop_over_mqtt(asset_path, db: Database, mosquitto, make_incident_event) -> None:  # type: ignore[no-untyped-def]
    site = _site(str(asset_path("vehicle_counting_input_video")), mosquitto.port)
    cfg = TicketsConfig(verify_duration_s=4.0)
    tickets = TicketService(db, MqttConfig(port=mosquitto.port), cfg, client_id="tickets-verify")
    verifier = VerifierService(site, verifier=Verifier(site))
    stop = threading.Event()
    threads = [threading.Thread(target=tickets.run, args=(stop,), daemon=True),
               threading.Thread(target=verifier.run, args=(stop,), daemon=True)]
    for t in threads:
        t.start()
    try:
        assert tickets.transport.wait_connected(10) and verifier.transport.wait_connected(10)
        ids = {}
        for zone in ("kerb-parked", "pavement-empty"):
            ev = make_incident_event(f"inc-{zone}", 1, camera_id="street-1", zone_id=zone, grid_cell="G-07")
            apply_event(db, cfg, ev, ev.topic())
            with db.transaction() as s:
                tid = repo.get_incident(s, ev.incident_id).ticket_id
                assert tid is not None
                transition(s, tid, "dispatched", actor="centre", reason="to traffic police")
                transition(s, tid, "disposed", actor="officer-3", reason="owner moved the car",
                           verify_duration_s=cfg.verify_duration_s)
            ids[zone] = tid
        tickets.publisher.wake()

        def states() -> dict[str, str]:
            with db.transaction() as s:
                return {z: repo.get_ticket(s, t).state for z, t in ids.items()}

        assert _wait(lambda: "disposed" not in states().values(), 120), states()
        assert states() == {"kerb-parked": "dispatched", "pavement-empty": "verified"}
        with db.transaction() as s:
            back = repo.ticket_history(s, ids["kerb-parked"])[-1]
            done = repo.ticket_history(s, ids["pavement-empty"])[-1]
        assert (back.from_state, back.to_state, back.actor) == ("disposed", "dispatched", "verifier")
        assert '"label": "car"' in (back.evidence or "")             # the evidence travels with it
        assert (done.from_state, done.to_state) == ("disposed", "verified")
        print(f"\nverifier: {back.reason} | {done.reason}")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
