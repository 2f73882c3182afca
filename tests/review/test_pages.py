"""Queue filters, detail page, verdicts recorded with their outbox message, API and OpenAPI document."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from review_kit import login
from sqlalchemy import select

from storage.db import Database
from storage.models import OutboxRow, Verdict


def _ids(client: TestClient, **params: str) -> list[str]:
    r = client.get("/api/incidents", params=params)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()]


@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["inc-c-000003", "inc-b-000002", "inc-a-000001"]),
    ({"camera": "cam-b"}, ["inc-b-000002"]),
    ({"grid_cell": "G-01"}, ["inc-c-000003", "inc-a-000001"]),
    ({"type": "street_stall"}, ["inc-c-000003"]),
    # started at 22:13:20, 22:15:00 and 22:16:40 on 2026-09-21 in Asia/Shanghai
    ({"since": "2026-09-21T22:14"}, ["inc-c-000003", "inc-b-000002"]),
    ({"until": "2026-09-21T22:14"}, ["inc-a-000001"]),
    ({"status": "confirmed"}, []),
])
def test_queue_filters(client: TestClient, params: dict[str, str], expected: list[str]) -> None:
    login(client)
    assert _ids(client, **params) == expected


def test_bad_filter_values_are_named(client: TestClient) -> None:
    login(client)
    r = client.get("/api/incidents", params={"since": "yesterday"})
    assert r.status_code == 422 and "since" in r.text
    assert client.get("/api/incidents", params={"status": "maybe"}).status_code == 422


def test_queue_page_lists_incidents_and_links_them(client: TestClient) -> None:
    login(client)
    page = client.get("/queue?camera=cam-a")
    assert page.status_code == 200
    assert "/incidents/inc-a-000001?camera=cam-a" in page.text and "inc-b-000002" not in page.text


def test_detail_page_shows_evidence_and_neighbours(client: TestClient) -> None:
    login(client)
    page = client.get("/incidents/inc-b-000002")
    assert page.status_code == 200
    assert 'id="prev" href="/incidents/inc-c-000003' in page.text
    assert 'id="next" href="/incidents/inc-a-000001' in page.text
    a = client.get("/incidents/inc-a-000001").text
    assert 'src="/evidence/inc-a-000001/snapshot.jpg"' in a and "No clip" in a
    assert client.get("/incidents/inc-nope-0000").status_code == 404


def test_confirm_and_reject_are_recorded_with_their_verdict_messages(client: TestClient, db: Database) -> None:
    token = login(client)
    r = client.post("/incidents/inc-a-000001/verdict", data={"verdict": "confirm", "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/incidents/inc-")
    no_reason = client.post("/incidents/inc-b-000002/verdict", data={"verdict": "reject", "csrf_token": token})
    assert no_reason.status_code == 422 and "reason" in no_reason.text
    api = client.post("/api/incidents/inc-b-000002/verdict", json={"verdict": "reject", "reason": "delivery van"},
                      headers={"X-CSRF-Token": token})
    assert api.status_code == 200 and api.json()["topic"] == "patrol/v1/verdicts/cam-b"
    with db.transaction() as s:
        verdicts = [(v.incident_id, v.verdict, v.reason, v.operator) for v in s.scalars(select(Verdict))]
        outbox = [(o.topic, json.loads(o.payload)) for o in s.scalars(select(OutboxRow))
                  if "/verdicts/" in o.topic]
    assert verdicts == [("inc-a-000001", "confirm", "", "alice"), ("inc-b-000002", "reject", "delivery van", "alice")]
    assert [t for t, _ in outbox] == ["patrol/v1/verdicts/cam-a", "patrol/v1/verdicts/cam-b"]
    assert outbox[1][1] | {"at": 0, "verdict_id": 0} == {
        "schema_version": 1, "verdict_id": 0, "incident_id": "inc-b-000002", "camera_id": "cam-b",
        "grid_cell": "G-02", "type": "illegal_parking", "zone_id": "kerb", "verdict": "reject",
        "reason": "delivery van", "operator": "alice", "at": 0}
    assert _ids(client) == ["inc-c-000003"]
    assert _ids(client, status="rejected") == ["inc-b-000002"]
    assert client.post("/api/incidents/inc-nope-0000/verdict", json={"verdict": "confirm"},
                       headers={"X-CSRF-Token": token}).status_code == 404


def test_openapi_document_describes_the_api(client: TestClient) -> None:
    login(client)
    doc = client.get("/openapi.json").json()
    assert {"/api/incidents", "/api/incidents/{incident_id}", "/api/incidents/{incident_id}/verdict",
            "/api/me"} <= set(doc["paths"])
    assert not any(p.startswith(("/evidence", "/login", "/queue")) for p in doc["paths"])


def test_evidence_supports_range_requests_for_the_video_player(client: TestClient) -> None:
    login(client)
    r = client.get("/evidence/inc-a-000001/snapshot.jpg", headers={"Range": "bytes=2-5"})
    assert r.status_code == 206 and r.content == b"fake"


def test_pages_forbid_framing_and_foreign_scripts(client: TestClient) -> None:
    r = client.get("/login")
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


def test_detail_page_flags_evidence_altered_since_recorded(client: TestClient, ctx) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    folder = ctx.store.incident_dir("inc-a-000001")
    digest = hashlib.sha256((folder / "snapshot.jpg").read_bytes()).hexdigest()
    manifest = {"files": {"snapshot.jpg": {"sha256": digest, "bytes": 10}}, "rule": {"thresholds": {},
                "durations": {}}, "clip": {"status": "unavailable"}, "times": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    login(client)
    assert "Files match the sha256" in client.get("/incidents/inc-a-000001").text
    (folder / "snapshot.jpg").write_bytes(b"\xff\xd8edited")
    page = client.get("/incidents/inc-a-000001").text
    assert "Altered or missing since recorded: snapshot.jpg" in page


def test_two_apps_keep_their_own_context(ctx, db: Database) -> None:
    """Routers reach the context through the app they are mounted in, never a global: two apps with
    different sites in one process each show their own."""
    from dataclasses import replace

    from review.app import create_app

    north = TestClient(create_app(replace(ctx, site_name="North district")), follow_redirects=False)
    south = TestClient(create_app(replace(ctx, site_name="South district")), follow_redirects=False)
    assert "North district" in north.get("/login").text and "South district" not in north.get("/login").text
    assert "South district" in south.get("/login").text
