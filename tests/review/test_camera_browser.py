"""Issue 16 acceptance 1 in headless Chromium: an engineer opens a camera whose picture is a frame of
the shared street clip (vehicle_counting_input_video.mp4), draws a NEW no_parking polygon by clicking
on the picture (moving one point by dragging and deleting a stray one on the way), saves; ``patrol
check-config`` passes on the written file, and ``patrol replay`` with it on that clip fires an
illegal_parking incident in the drawn zone whose place lies inside the drawn polygon.

The polygon goes round the kerb space on the right of the view where a silver car stands in a
driveway for the whole clip (ground point about (0.965, 0.543); see tests/rules/test_parking_footage.py).
Also in the browser: a polygon of two points and a self-crossing one are refused inline with the
schema's messages and nothing is written; an operator (not an engineer) gets a 403 page.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_kit import ARTIFACTS, chromium, log_in, serving, wait_js
from matplotlib.path import Path as Polygon
from review_kit import PASSWORD

from camera_config.loader import load_config
from evidence.store import EvidenceStore
from review.app import create_app
from review.deps import ReviewContext
from review.security import SessionCodec
from review.server import add_operator
from storage.db import open_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SITE = """\
# camera page acceptance: one camera over the shared street clip
site: {{name: Jiading test, timezone: Asia/Shanghai}}
cameras:
  - id: street-1
    url: {clip}
    grid_cell: JD-0101
    analysis_fps: 2
    detector: {{model: yolox_nano_416, default_score: 0.3}}
    zones:
      # the far side beyond the island: cars wait at the junction there
      - id: far-side
        type: no_parking
        polygon: [[0.40, 0.28], [0.70, 0.28], [0.70, 0.50], [0.40, 0.50]]
        limit_s: 30
"""
DRAWN = [(0.86, 0.42), (0.995, 0.42), (0.995, 0.64), (0.86, 0.64)]


@pytest.fixture
def camera_site(tmp_path: Path, asset_path) -> Iterator[tuple[str, Path, Path]]:  # type: ignore[no-untyped-def]
    """The review page under uvicorn with the site file to edit; an engineer and an operator."""
    clip = asset_path("vehicle_counting_input_video")
    site = tmp_path / "site.yaml"
    site.write_text(SITE.format(clip=clip), encoding="utf-8")
    db = open_database(f"sqlite:///{tmp_path / 'patrol.db'}")
    add_operator(db, "erin", PASSWORD, role="engineer")
    add_operator(db, "olga", PASSWORD, role="operator")
    ctx = ReviewContext(db=db, store=EvidenceStore(tmp_path / "evidence"), codec=SessionCodec(b"k" * 64, 3600),
                        timezone="Asia/Shanghai", language="en", site_file=str(site))
    try:
        with serving(create_app(ctx)) as base:
            yield base, site, clip
    finally:
        db.dispose()


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from chromium()


def log_in_to(page: Any, base: str, user: str, target: str) -> None:
    log_in(page, base, user, PASSWORD, target)
    page.wait_for_url(base + target)


class Picture:
    """Clicks on the camera picture at normalised coordinates (its box is measured at each use: a click
    elsewhere may have scrolled the page)."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def at(self, x: float, y: float) -> tuple[float, float]:
        frame = self.page.locator("#camera-frame")
        frame.scroll_into_view_if_needed()
        box = frame.bounding_box()
        return box["x"] + x * box["width"], box["y"] + y * box["height"]

    def click(self, x: float, y: float) -> None:
        self.page.mouse.click(*self.at(x, y))

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        self.page.mouse.move(*self.at(*start))
        self.page.mouse.down()
        self.page.mouse.move(*self.at(*end), steps=5)
        self.page.mouse.up()


def add_zone(page: Any, zone_id: str) -> None:
    page.fill("#new-zone-id", zone_id)
    page.select_option("#new-zone-type", "no_parking")
    page.click("#add-zone")


def zone_messages(page: Any) -> str:
    return str(page.inner_text("#zone-list")) + "\n" + str(page.inner_text("#zone-errors"))


def test_engineer_draws_a_no_parking_zone_that_fires_where_it_was_drawn(camera_site, browser) -> None:  # type: ignore[no-untyped-def]
    base, site, clip = camera_site
    original = site.read_text()
    ARTIFACTS.mkdir(exist_ok=True)

    # an operator may not open the camera pages: a 403 page, not JSON
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log_in_to(page, base, "olga", "/queue")
    answer = page.goto(base + "/cameras/street-1")
    assert answer.status == 403 and answer.headers["content-type"].startswith("text/html")
    assert page.locator("#zones-svg").count() == 0
    page.close()

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log_in_to(page, base, "erin", "/cameras")
    page.click("#cameras a:text('street-1')")
    page.wait_for_url(base + "/cameras/street-1")
    wait_js(page, "document.getElementById('camera-frame').complete && "
                  "document.getElementById('camera-frame').naturalWidth > 0", 20)
    assert page.evaluate("document.getElementById('camera-frame').naturalWidth") == 640  # the clip's frame
    assert page.locator("#zones-svg polygon[data-zone=far-side]").count() == 1  # the zone already there
    picture = Picture(page)

    # two points: refused inline with the schema's message, nothing written
    add_zone(page, "two-points")
    picture.click(0.2, 0.7)
    picture.click(0.3, 0.7)
    page.click("#save-zones")
    wait_js(page, "document.querySelector('#zone-list li.invalid') !== null", 20)
    assert "at least 3" in zone_messages(page)
    assert "Not saved" in page.inner_text("#save-status")
    page.click("#delete-zone")
    # a bow tie (edges crossing): refused inline too
    add_zone(page, "bow-tie")
    for x, y in [(0.1, 0.6), (0.3, 0.8), (0.3, 0.6), (0.1, 0.8)]:
        picture.click(x, y)
    page.click("#save-zones")
    wait_js(page, "document.querySelector('#zone-list li.invalid') !== null", 20)
    assert "crosses itself" in zone_messages(page)
    page.screenshot(path=str(ARTIFACTS / "camera-invalid-zone.png"), full_page=True)
    page.click("#delete-zone")
    assert site.read_text() == original and not list(site.parent.glob("site.yaml.bak-*"))

    # the new zone: four clicks, the last one off and dragged into place, a stray fifth deleted
    add_zone(page, "kerb-drawn")
    first, second, third = DRAWN[:3]
    for x, y in (first, second, third):
        picture.click(x, y)
    picture.click(DRAWN[3][0], 0.74)
    picture.click(0.60, 0.90)  # a stray point ...
    page.keyboard.press("Delete")  # ... removed again (it is the selected one)
    page.click("#draw-toggle")  # stop adding points
    picture.drag((DRAWN[3][0], 0.74), DRAWN[3])
    page.fill("#zone-params input[data-field=limit_s]", "12")
    page.press("#zone-params input[data-field=limit_s]", "Tab")
    assert page.locator("#zones-svg circle.vertex").count() == 4
    page.click("#save-zones")
    wait_js(page, "document.getElementById('save-status').dataset.written === 'yes'", 20)
    assert "Saved" in page.inner_text("#save-status")
    diff = page.inner_text("#zones-diff")
    assert "+      - id: kerb-drawn" in diff and "+        limit_s: 12" in diff
    page.screenshot(path=str(ARTIFACTS / "camera-zone-saved.png"), full_page=True)

    # the written file: the old zone kept, the new one where it was drawn, comments outside the block kept
    (backup,) = site.parent.glob("site.yaml.bak-*")
    assert backup.read_text() == original
    text = site.read_text()
    assert "# camera page acceptance" in text and "# the far side beyond the island" in text
    cam = load_config(site).camera("street-1")
    assert [z.id for z in cam.zones] == ["far-side", "kerb-drawn"]
    drawn = cam.zones[1]
    assert drawn.type == "no_parking" and drawn.limit_s == 12
    assert [c for point in drawn.polygon for c in point] == pytest.approx([c for p in DRAWN for c in p], abs=0.01)

    check = subprocess.run([sys.executable, "-m", "patrol", "check-config", str(site)], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert "ok (1 camera(s), 2 zone(s))" in check.stdout

    replay = subprocess.run([sys.executable, "-m", "patrol", "replay", "--config", str(site), "--camera",
                             "street-1", "--source", str(clip)], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert replay.returncode == 0, replay.stderr[-2000:]
    events = [json.loads(line) for line in replay.stdout.splitlines() if line.startswith("{")]
    opened = [e for e in events if e["event"] == "opened" and e["zone_id"] == "kerb-drawn"]
    assert len(opened) == 1, events
    (event,) = opened
    assert event["type"] == "illegal_parking"
    outline = Polygon(drawn.polygon)
    assert outline.contains_point(event["location"]), event["location"]
    x1, y1, x2, y2 = event["evidence"]["boxes"][0]["xyxy"]
    w, h = 640, 352
    assert outline.contains_point(((x1 + x2) / 2 / w, y2 / h))  # the vehicle's ground point, from its box
    assert outline.contains_point(((x1 + x2) / 2 / w, (y1 + y2) / 2 / h))  # and the box's centre
