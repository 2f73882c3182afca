"""End to end in headless Chromium: incidents from a real pipeline run, reviewed in the browser.

The pipeline (file source -> 2 fps -> YOLOX-Nano -> tracker -> parking rule -> lifecycle -> outbox)
runs over the first 18 s of vehicle_counting_input_video.mp4 with two no_parking zones: the kerb on the right where a
silver car stands all clip, and the far side where a queue of cars waits at the junction for ~20 s
(see tests/rules/test_parking_footage.py for what the footage shows). Evidence (remuxed clip,
snapshots, manifest) is written by the recorder hooked into the worker (tests/review/street_run.py:
recorded once per session, each test gets its own copy of the database and evidence). Then the review page runs
under uvicorn with a real outbox publisher to a real mosquitto, and Chromium logs in, lists the
queue, plays a clip, sees the snapshot, confirms one incident and rejects another with a reason.
Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from browser_kit import ARTIFACTS, SIZES, chromium, log_in, screens, serving, wait_js
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from street_run import copy_run, street_site

from alerts.mqtt import MqttTransport
from alerts.outbox import OutboxPublisher
from alerts.transport import Endpoint
from evidence.manifest import verify_manifest
from evidence.store import EvidenceStore
from review.app import create_app
from review.server import add_operator, build_context
from storage.db import Database, open_database
from storage.models import EvidenceRef, Incident, Verdict

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPERATOR, PASSWORD = "operator", "review-demo-pw"


class VerdictListener:
    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="verdict-listener")
        self.client.on_connect = lambda c, *_: (c.subscribe("patrol/v1/verdicts/#", qos=1), self.ready.set())
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def review_site(tmp_path: Path, asset_path, mosquitto, street_run: Path  # type: ignore[no-untyped-def]
                ) -> Iterator[tuple[str, Database, VerdictListener, str]]:
    """The review page over this test's copy of the recorded street run (its outbox not yet sent),
    under uvicorn, with a real outbox publisher to a real mosquitto and a listener of verdicts."""
    config = street_site(tmp_path, asset_path("vehicle_counting_input_video"), mosquitto.port)
    copy_run(street_run, tmp_path)
    db = open_database(config.database.url)
    add_operator(db, OPERATOR, PASSWORD)
    listener = VerdictListener(mosquitto.port)
    ctx = build_context(config, db)
    link = MqttTransport(config.mqtt, Endpoint("patrol-review-test"))
    publisher = OutboxPublisher(db, link, idle_poll_s=0.2)
    ctx.wake_outbox = publisher.wake
    link.start()
    publisher.start()
    try:
        with serving(create_app(ctx)) as base:
            yield base, db, listener, config.evidence.dir
    finally:
        publisher.stop()
        link.stop(offline=False)
        listener.close()
        db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module; each test opens its own page or context."""
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed (scripts/install_system_deps.sh)")
    yield from chromium()


def test_operator_reviews_real_incidents_in_chromium(review_site, browser) -> None:  # type: ignore[no-untyped-def]
    base, db, listener, evidence_dir = review_site
    with db.transaction() as s:
        incidents = s.scalars(select(Incident).where(Incident.type == "illegal_parking")).all()
        zones = {i.zone_id for i in incidents}
    assert len(incidents) >= 2 and zones == {"kerb-right", "far-side"}, zones
    with db.transaction() as s:  # every clip and snapshot is referenced in the database with its sha256
        refs = {(r.incident_id, r.kind): r.sha256 for r in s.scalars(select(EvidenceRef))}
    store = EvidenceStore(evidence_dir)
    for inc in incidents:
        manifest = store.read_manifest(inc.id)
        assert manifest is not None and manifest["clip"]["status"] == "written"
        assert verify_manifest(store.incident_dir(inc.id), manifest) == []
        assert refs[(inc.id, "clip")] == manifest["files"]["clip.mp4"]["sha256"]
        assert refs[(inc.id, "snapshot")] == manifest["files"]["snapshot.jpg"]["sha256"]
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    # not logged in: sent to the login page
    page.goto(base + "/queue")
    assert "/login" in page.url
    log_in(page, base, OPERATOR, PASSWORD, "/queue")
    page.wait_for_url(base + "/queue")
    rows = page.locator("#queue tr.row")
    assert rows.count() == len(incidents)
    assert "Illegal parking" in page.inner_text("#queue") and "street-1" in page.inner_text("#queue")
    page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)
    # keyboard: j moves the selection down
    page.keyboard.press("j")
    assert page.locator("#queue tr.row").nth(1).get_attribute("class").find("selected") >= 0  # type: ignore[union-attr]
    page.keyboard.press("k")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/incidents/**")
    first_url = page.url

    # the clip plays in the browser as it is (H.264 remuxed, never re-encoded)
    page.wait_for_selector("#clip")
    page.evaluate("document.getElementById('clip').play()")
    wait_js(page, "document.getElementById('clip').currentTime > 1.0", 20)
    assert page.evaluate("document.getElementById('clip').videoWidth") == 640
    assert page.evaluate("document.getElementById('clip').error") is None
    wait_js(page, "document.getElementById('snapshot').complete && "
                  "document.getElementById('snapshot').naturalWidth > 0", 10)
    assert page.evaluate("document.getElementById('snapshot').naturalWidth") == 640
    assert "Files match the sha256" in page.inner_text("#integrity")
    page.screenshot(path=str(ARTIFACTS / "review-incident.png"), full_page=True)
    first_id = first_url.rsplit("/", 1)[1].split("?")[0]

    # c confirms and moves on to the next unreviewed incident
    page.keyboard.press("c")
    page.wait_for_url(lambda url: url != first_url and "/incidents/" in url)
    second_id = page.url.rsplit("/", 1)[1].split("?")[0]
    # r asks for a reason, Enter rejects
    page.keyboard.press("r")
    page.keyboard.type("queue waiting at the junction, not parked")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: url.rstrip("/").rsplit("/", 1)[-1].split("?")[0] != second_id)
    page.screenshot(path=str(ARTIFACTS / "review-after-verdicts.png"), full_page=True)

    with db.transaction() as s:
        verdicts = [(v.incident_id, v.verdict, v.reason, v.operator) for v in s.scalars(select(Verdict))]
    assert verdicts == [(first_id, "confirm", "", OPERATOR),
                        (second_id, "reject", "queue waiting at the junction, not parked", OPERATOR)]
    messages = listener.wait_for(2)
    assert [(t, m["incident_id"], m["verdict"]) for t, m in messages] == [
        ("patrol/v1/verdicts/street-1", first_id, "confirm"), ("patrol/v1/verdicts/street-1", second_id, "reject")]
    assert messages[1][1]["reason"] == "queue waiting at the junction, not parked"


SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def _pixel(png: bytes, x: float, y: float) -> Any:
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return image[int(y), int(x)].astype(int)


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_review_in_each_language_boxes_enter_and_reasons(review_site, browser, lang: str) -> None:  # type: ignore[no-untyped-def]
    """Log in; the queue shows thumbnails; open an incident; the clip plays with the tracked boxes drawn
    (a pixel inside a drawn box differs from the clean frame); Enter in the reason field does not confirm;
    a reject without a reason is refused inline. zh-CN also saves the screenshots at both sizes."""
    base, db, _listener, _evidence = review_site
    words = {"zh-CN": {"login": "登录", "type": "违章停车", "need": "驳回必须填写理由"},
             "en": {"login": "Log in", "type": "Illegal parking", "need": "A rejection needs a reason"}}[lang]
    context = browser.new_context(viewport=SIZES["1440x900"])
    page = context.new_page()
    page.goto(f"{base}/login?lang={lang}")  # the user's choice, kept in a cookie
    assert page.evaluate("document.documentElement.lang") == lang and words["login"] in page.inner_text("h1")
    log_in(page, base, OPERATOR, PASSWORD, "/queue")
    page.wait_for_url(base + "/queue")
    assert page.evaluate("document.documentElement.lang") == lang
    assert words["type"] in page.inner_text("#queue") and "illegal_parking" not in page.inner_text("#queue")
    rows = page.locator("#queue tr.row").count()
    assert rows >= 2
    wait_js(page, "Array.from(document.querySelectorAll('#queue img.thumb'))"
                  ".every(i => i.complete && i.naturalWidth === 640)", 10)
    assert page.locator("#queue img.thumb").count() == rows  # every incident has its snapshot as thumbnail
    if lang == "zh-CN":
        screens(page, "review-queue", SCREENSHOTS)

    page.locator("#queue tr.row a").first.click()
    page.wait_for_url(f"{base}/incidents/**")
    incident_url = page.url
    wait_js(page, "document.getElementById('boxes') && +document.getElementById('boxes').dataset.frames > 0", 10)
    page.evaluate("document.getElementById('clip').play()")
    wait_js(page, "document.getElementById('clip').currentTime > 1.0", 20)
    start = float(page.evaluate("+document.getElementById('boxes').dataset.drawnAt"))
    wait_js(page, f"+document.getElementById('boxes').dataset.drawnAt > {start + 0.3}", 10)  # redrawn as it plays
    # a frame with a box: seek there paused; compare the picture with and without the drawing
    doc = page.evaluate("fetch(document.getElementById('boxes').dataset.src).then(r => r.json())")
    frame = next(f for f in doc["frames"] if f["boxes"] and f["t"] > 0.5)
    page.evaluate("(t) => { const v = document.getElementById('clip'); v.pause(); v.currentTime = t; }", frame["t"])
    wait_js(page, f"Math.abs(+document.getElementById('boxes').dataset.drawnAt - {frame['t']}) < 0.05 && "
                  "document.getElementById('clip').readyState >= 2 && !document.getElementById('clip').seeking", 10)
    assert int(page.evaluate("+document.getElementById('boxes').dataset.drawn")) >= 1
    time.sleep(0.3)
    rect = page.evaluate("(() => { const r = document.getElementById('clip').getBoundingClientRect(); "
                         "return {x: r.x, y: r.y, w: r.width, h: r.height}; })()")
    x1, y1, x2, y2 = frame["boxes"][0]["xyxy"]
    scale = rect["w"] / doc["frame_size"][0]
    cx, cy = (x1 + x2) / 2 * scale, (y1 + y2) / 2 * scale
    region = {"x": rect["x"], "y": rect["y"], "width": rect["w"], "height": rect["h"]}
    drawn = page.screenshot(clip=region)
    page.evaluate("document.getElementById('boxes').style.visibility = 'hidden'")
    clean = page.screenshot(clip=region)
    page.evaluate("document.getElementById('boxes').style.visibility = ''")
    difference = int(abs(_pixel(drawn, cx, cy) - _pixel(clean, cx, cy)).sum())
    assert difference > 20, f"inside box {frame['boxes'][0]} the drawing changes the pixel by {difference} only"

    # Enter in the reason field never confirms
    page.click("#reason")
    page.keyboard.type("not parked, waiting at the junction")
    page.keyboard.press("Enter")
    time.sleep(1.0)
    assert page.url == incident_url
    with db.transaction() as s:
        assert s.scalars(select(Verdict)).all() == []
    # a reject without a reason is refused inline, nothing recorded
    page.fill("#reason", "")
    page.click("#reject")
    wait_js(page, "!document.getElementById('reason-error').hidden", 5)
    assert words["need"] in page.inner_text("#reason-error") and page.url == incident_url
    with db.transaction() as s:
        assert s.scalars(select(Verdict)).all() == []
    if lang == "zh-CN":
        screens(page, "review-incident", SCREENSHOTS)
    context.close()
