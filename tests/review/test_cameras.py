"""The camera pages over HTTP (the browser test is test_camera_browser.py): roles, the picture from the
camera's clip, zone validation by the site schema with messages per zone, the diff, the written file
(backup kept, comments outside the zones block kept, re-validated), the patch download."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from review_kit import PASSWORD, login

from camera_config.loader import load_config
from review.app import create_app
from review.deps import ReviewContext
from review.server import add_operator
from storage.db import Database

SITE = """\
# Jiading test site: one camera over the street of the shared clip
site: {{name: Jiading test, timezone: Asia/Shanghai}}
cameras:
  - id: street-1  # the kerb camera
    url: {clip}
    grid_cell: JD-0101
    analysis_fps: 2
    zones:
      # the far side, where cars wait at the junction
      - id: far-side
        type: no_parking
        polygon: [[0.40, 0.28], [0.70, 0.28], [0.70, 0.50], [0.40, 0.50]]
        limit_s: 10
    # detector as the label files use it
    detector: {{model: yolox_nano_416, default_score: 0.3}}
# nothing else
"""
KERB = {"id": "kerb-right", "type": "no_parking", "limit_s": 12,
        "polygon": [[0.85, 0.40], [0.99, 0.40], [0.99, 0.65], [0.85, 0.65]]}
FAR = {"id": "far-side", "type": "no_parking", "limit_s": 10,
       "polygon": [[0.40, 0.28], [0.70, 0.28], [0.70, 0.50], [0.40, 0.50]]}


@pytest.fixture
def site_file(tmp_path: Path, asset_path) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(clip=asset_path("vehicle_counting_input_video")), encoding="utf-8")
    load_config(path)
    return path


@pytest.fixture
def engineer(ctx: ReviewContext, db: Database, site_file: Path) -> tuple[TestClient, str]:
    add_operator(db, "erin", PASSWORD, role="engineer")
    ctx.site_file = str(site_file)
    client = TestClient(create_app(ctx), follow_redirects=False)
    return client, login(client, "erin")


def post_zones(client: TestClient, csrf: str, zones: list[dict], action: str = "check"):  # type: ignore[no-untyped-def]
    return client.post("/cameras/street-1/zones", json={"zones": zones, "action": action},
                       headers={"X-CSRF-Token": csrf})


def test_operator_gets_a_403_page_and_engineer_the_camera(engineer, ctx: ReviewContext) -> None:  # type: ignore[no-untyped-def]
    client, _ = engineer
    page = client.get("/cameras/street-1")
    assert page.status_code == 200
    data = json.loads(page.text.split('id="editor-data">')[1].split("</script>")[0])
    assert data["zones"] == [FAR] and (data["width"], data["height"]) == (640, 352)
    assert set(data["types"]) >= {"no_parking", "no_vending", "keep_clear"}
    assert {f["name"] for f in data["types"]["no_parking"]} >= {"limit_s", "still_tolerance", "min_coverage"}
    assert "street-1" in client.get("/cameras").text
    operator = TestClient(client.app, follow_redirects=False)
    login(operator, "alice")
    for path in ("/cameras", "/cameras/street-1", "/cameras/street-1/frame.jpg"):
        r = operator.get(path, headers={"Accept": "text/html"})
        assert r.status_code == 403, path
        assert r.headers["content-type"].startswith("text/html") and "<html" in r.text, path
    assert post_zones(operator, login(operator, "alice"), [FAR, KERB], "save").status_code == 403
    anonymous = TestClient(client.app, follow_redirects=False)
    assert anonymous.get("/cameras/street-1").status_code == 303  # to the login


def test_picture_is_the_chosen_frame_of_the_cameras_clip(engineer) -> None:  # type: ignore[no-untyped-def]
    client, _ = engineer
    at5 = client.get("/cameras/street-1/frame.jpg")
    at20 = client.get("/cameras/street-1/frame.jpg?t=20")
    assert at5.status_code == at20.status_code == 200 and at5.headers["content-type"] == "image/jpeg"
    a, b = Image.open(io.BytesIO(at5.content)), Image.open(io.BytesIO(at20.content))
    assert a.size == b.size == (640, 352)
    assert at5.content != at20.content  # another moment of the clip
    assert client.get("/cameras/street-1/frame.jpg?t=-1").status_code == 422
    assert client.get("/cameras/nope/frame.jpg").status_code == 404


@pytest.mark.parametrize(("polygon", "says"), [
    ([[0.1, 0.1], [0.2, 0.1]], "at least 3"),
    ([[0.1, 0.1], [0.3, 0.3], [0.3, 0.1], [0.1, 0.3]], "crosses itself"),
    ([[0.1, 0.1], [1.2, 0.1], [0.2, 0.3]], "less than or equal to 1"),
])
def test_invalid_polygon_is_refused_with_the_schemas_message_on_its_zone(engineer, site_file: Path,  # type: ignore[no-untyped-def]
                                                                         polygon: list, says: str) -> None:
    client, csrf = engineer
    before = site_file.read_text()
    r = post_zones(client, csrf, [FAR, {**KERB, "polygon": polygon}], "save")
    assert r.status_code == 422
    body = r.json()
    assert body["ok"] is False and list(body["zones"]) == ["1"], body
    assert any(says in m and m.startswith("polygon") for m in body["zones"]["1"]), body
    assert site_file.read_text() == before and not list(site_file.parent.glob("site.yaml.bak-*"))


def test_bad_parameter_and_unknown_type_are_named(engineer) -> None:  # type: ignore[no-untyped-def]
    client, csrf = engineer
    r = post_zones(client, csrf, [{**FAR, "limit_s": -3}, {**KERB, "type": "no_such"}])
    assert r.status_code == 422
    zones = r.json()["zones"]
    assert any(m.startswith("limit_s: ") and "greater than 0" in m for m in zones["0"]), zones
    assert any("unknown zone type 'no_such'" in m for m in zones["1"]), zones


def test_save_shows_the_diff_writes_with_a_backup_and_keeps_comments(engineer, site_file: Path) -> None:  # type: ignore[no-untyped-def]
    client, csrf = engineer
    before = site_file.read_text()
    check = post_zones(client, csrf, [FAR, KERB])
    assert check.status_code == 200 and check.json()["written"] is False
    diff = check.json()["diff"]
    assert "+      - id: kerb-right" in diff and "+        polygon: [[0.85, 0.4], [0.99, 0.4]" in diff
    assert site_file.read_text() == before  # a check writes nothing
    saved = post_zones(client, csrf, [FAR, KERB], "save").json()
    assert saved["written"] is True and saved["kept_comments"] is True
    (backup,) = site_file.parent.glob("site.yaml.bak-*")
    assert backup.read_text() == before and str(backup) == saved["backup"]
    text = site_file.read_text()
    for comment in ("# Jiading test site", "# the kerb camera", "# the far side", "# detector as", "# nothing else"):
        assert comment in text
    cam = load_config(site_file).camera("street-1")
    assert [z.id for z in cam.zones] == ["far-side", "kerb-right"]
    assert cam.zones[1].limit_s == 12 and cam.zones[1].polygon[1] == (0.99, 0.4)
    assert cam.detector.default_score == 0.3  # the rest of the camera is untouched
    # the patch download is the same diff, against the file as it is now: nothing left to change
    patch = post_zones(client, csrf, [FAR, KERB], "patch")
    assert patch.status_code == 200 and patch.headers["content-type"].startswith("text/x-diff")
    assert "attachment" in patch.headers["content-disposition"] and patch.text == ""
    moved = post_zones(client, csrf, [FAR, {**KERB, "polygon": [[0.8, 0.4], [0.99, 0.4], [0.99, 0.65]]}], "patch")
    assert moved.text.startswith("--- a/site.yaml\n+++ b/site.yaml\n") and "-        polygon: [[0.85" in moved.text


def test_saving_needs_the_csrf_token(engineer, site_file: Path) -> None:  # type: ignore[no-untyped-def]
    client, _ = engineer
    before = site_file.read_text()
    r = client.post("/cameras/street-1/zones", json={"zones": [FAR, KERB], "action": "save"})
    assert r.status_code == 403 and site_file.read_text() == before


def test_the_running_pipelines_latest_frame_is_preferred(engineer, ctx: ReviewContext, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, _ = engineer
    assert client.get("/cameras/street-1/frame.jpg").headers["x-picture"].startswith("frame at 5 s of ")
    folder = tmp_path / "frames" / "street-1"
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("RGB", (640, 352), (0, 128, 255)).save(buf, "JPEG")
    (folder / "latest.jpg").write_bytes(buf.getvalue())
    ctx.snapshots_dir = str(tmp_path / "frames")
    r = client.get("/cameras/street-1/frame.jpg")
    assert r.content == buf.getvalue() and r.headers["x-picture"] == "latest frame of the running pipeline"
