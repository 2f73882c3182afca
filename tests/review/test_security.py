"""No page or file without login; no path out of the store; CSRF on every POST; hashed passwords."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from review_kit import PASSWORD, login, routes_of
from sqlalchemy import select

from review.deps import require_csrf
from review.security import verify_password
from storage.db import Database
from storage.models import Operator, OutboxRow, Verdict

PROTECTED_GETS = ["/", "/queue", "/queue?status=all", "/incidents/inc-a-000001", "/evidence/inc-a-000001/snapshot.jpg",
                  "/api/incidents", "/api/incidents/inc-a-000001", "/api/me", "/openapi.json", "/metrics",
                  "/docs", "/evidence/../secret.txt"]


@pytest.mark.parametrize("path", PROTECTED_GETS)
def test_nothing_is_served_without_login(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code in (303, 401, 404)
    if r.status_code == 303:
        assert r.headers["location"].startswith("/login")
    assert "fakejpeg" not in r.text and "inc-a-000001" not in r.text.replace("next=", "")
    assert "SECRET" not in r.text


def test_every_route_is_behind_the_login(client: TestClient) -> None:
    """Walk the app's own route table, so a route added later cannot slip past."""
    routes = routes_of(client.app)  # type: ignore[arg-type]
    walked = set()
    for path, methods, _ in routes:
        if path in ("/login", "/healthz", "/readyz") or path.startswith("/static"):  # public by design
            continue
        concrete = path.replace("{incident_id}", "inc-a-000001").replace("{path:path}", "inc-a-000001/snapshot.jpg")
        for method in methods or {"GET"}:
            r = client.request(method, concrete)
            assert r.status_code in (303, 401, 405), (method, path, r.status_code)
            walked.add((method, path))
    # the walk saw the routers' routes, not only the app's own (openapi, static)
    assert {("GET", "/queue"), ("POST", "/incidents/{incident_id}/verdict"), ("GET", "/evidence/{path:path}"),
            ("GET", "/metrics"), ("POST", "/api/incidents/{incident_id}/verdict"), ("POST", "/logout")} <= walked


def test_bad_session_cookie_is_ignored(client: TestClient) -> None:
    client.cookies.set("patrol_session", "eyJ1IjoiYWxpY2UiLCJjIjoieCJ9.forged.signature")
    assert client.get("/api/me").status_code == 401


TRAVERSALS = ["/evidence/../secret.txt", "/evidence/%2e%2e/secret.txt", "/evidence/%2E%2E/secret.txt",
              "/evidence/inc-a-000001/../../secret.txt", "/evidence/inc-a-000001/%2e%2e/%2e%2e/secret.txt",
              "/evidence/inc-a-000001%2f..%2f..%2fsecret.txt", "/evidence/..%2fsecret.txt",
              "/evidence/%252e%252e/secret.txt", "/evidence//etc/passwd", "/evidence/%2fetc%2fpasswd",
              "/evidence/inc-a-000001/..%5c..%5csecret.txt", "/evidence/.%2e/secret.txt"]


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_evidence_paths_outside_the_store_are_refused(client: TestClient, raw: str) -> None:
    login(client)
    # send the path exactly as written: no client-side normalisation of dot segments
    request = client.build_request("GET", "http://testserver/")
    request.url = httpx.URL("http://testserver/").copy_with(raw_path=raw.encode())
    r = client.send(request)
    assert r.status_code in (400, 404), (raw, r.status_code)
    assert "SECRET" not in r.text and "root:" not in r.text


def test_evidence_inside_the_store_is_served_after_login(client: TestClient) -> None:
    login(client)
    r = client.get("/evidence/inc-a-000001/snapshot.jpg")
    assert r.status_code == 200 and r.content == b"\xff\xd8fakejpeg"
    assert r.headers["content-type"] == "image/jpeg"


def test_every_post_route_checks_csrf(client: TestClient) -> None:
    posts = [r for _, methods, r in routes_of(client.app) if isinstance(r, APIRoute) and "POST" in methods]  # type: ignore[arg-type]
    assert {r.path for r in posts} == {"/login", "/logout", "/incidents/{incident_id}/verdict",
                                       "/api/incidents/{incident_id}/verdict", "/cameras/{camera_id}/zones",
                                       "/tickets/{ticket_id}/dispose"}
    for route in posts:
        assert any(d.call is require_csrf for d in route.dependant.dependencies), route.path


def test_verdict_needs_the_sessions_csrf_token(client: TestClient, ctx, db: Database) -> None:
    token = login(client)
    url = "/incidents/inc-a-000001/verdict"
    assert client.post(url, data={"verdict": "confirm"}).status_code == 403
    assert client.post(url, data={"verdict": "confirm", "csrf_token": "guess"}).status_code == 403
    api = "/api/incidents/inc-a-000001/verdict"
    assert client.post(api, json={"verdict": "confirm"}).status_code == 403
    # bob's token does not work in alice's session
    other = TestClient(client.app, follow_redirects=False)
    bob_token = login(other, "bob", PASSWORD + "!")
    assert client.post(url, data={"verdict": "confirm", "csrf_token": bob_token}).status_code == 403
    with db.transaction() as s:
        assert s.scalars(select(Verdict)).all() == []
    r = client.post(url, data={"verdict": "confirm", "csrf_token": token})
    assert r.status_code == 303
    with db.transaction() as s:
        (v,) = s.scalars(select(Verdict)).all()
        assert (v.incident_id, v.operator, v.verdict) == ("inc-a-000001", "alice", "confirm")


def test_login_needs_csrf_and_the_right_password(client: TestClient) -> None:
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 403
    bad = client.post("/login", data={"username": "alice", "password": "wrong password", "csrf_token": token})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    nobody = client.post("/login", data={"username": "mallory", "password": PASSWORD, "csrf_token": token})
    assert nobody.status_code == 401
    assert client.get("/api/me").status_code == 401


def test_login_never_redirects_off_site(client: TestClient) -> None:
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token,
                                    "next": "//evil.example/x"})
    assert r.status_code == 303 and r.headers["location"] == "/queue"


def test_passwords_are_stored_as_argon2_hashes(ctx, db: Database) -> None:
    with db.transaction() as s:
        rows = s.scalars(select(Operator)).all()
    assert {r.username for r in rows} == {"alice", "bob"}
    for r in rows:
        assert r.password_hash.startswith("$argon2id$")
        assert PASSWORD not in r.password_hash
    alice = next(r for r in rows if r.username == "alice")
    assert verify_password(alice.password_hash, PASSWORD)
    assert not verify_password(alice.password_hash, PASSWORD + "x")


def test_logout_ends_the_session(client: TestClient) -> None:
    token = login(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/queue").status_code == 303


def test_metrics_with_scrape_token_only(client: TestClient, db: Database) -> None:
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-token"})
    assert r.status_code == 200
    assert 'patrol_incidents{state="open",type="illegal_parking"} 2.0' in r.text
    assert 'patrol_outbox_depth{state="pending"} 3.0' in r.text
    with db.transaction() as s:
        assert s.scalars(select(OutboxRow)).all()  # the incident events are in the outbox


def _raw_asgi_get(app, path: str, cookie: str) -> tuple[int, bytes]:
    """Call the ASGI app with ``path`` exactly as a server that does no normalisation would pass it."""
    import asyncio

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


@pytest.mark.parametrize("path", ["/evidence/../secret.txt", "/evidence/inc-a-000001/../../secret.txt",
                                  "/evidence/inc-a-000001/../inc-a-000001/snapshot.jpg", "/evidence/./x",
                                  "/evidence/inc-a-000001/..\\..\\secret.txt"])
def test_literal_dot_segments_reaching_the_app_are_refused(client: TestClient, path: str) -> None:
    login(client)
    cookie = f"patrol_session={client.cookies.get('patrol_session')}"
    status, body = _raw_asgi_get(client.app, path, cookie)
    assert status == 400 and b"SECRET" not in body and b"fakejpeg" not in body


@pytest.mark.parametrize("path", ["/queue", "/api/me", "/login", "/static/review.css"])
def test_security_headers_on_every_answer_including_the_login_gates(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code in (200, 303, 401), (path, r.status_code)
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
