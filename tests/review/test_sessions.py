"""Server-side sessions (revoked at logout, operator deletion and disable), the login throttle and HSTS.

Issue 14 item 5 measured: a cookie still worked after logout; a deleted operator's session could still
post verdicts; 60 wrong passwords at 6.7/s met no delay or lockout. Each is reproduced here against
the real app (TestClient) on a migrated SQLite database, with a fake clock for the throttle.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from review_kit import PASSWORD, login
from sqlalchemy import select

from review.app import create_app
from review.deps import ReviewContext
from review.security import ACCOUNT_THROTTLE, session_id_of
from review.server import disable_operator, remove_operator
from storage.db import Database
from storage.models import LoginThrottle, ReviewSession, Verdict

VERDICT = "/incidents/inc-a-000001/verdict"


class FakeClock:
    def __init__(self, t: float = 1_790_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def copied(client: TestClient) -> TestClient:
    """Another client holding a copy of ``client``'s cookie (what a thief of the cookie has)."""
    thief = TestClient(client.app, follow_redirects=False)
    thief.cookies.set("patrol_session", client.cookies["patrol_session"])
    return thief


def verdicts(db: Database) -> list[tuple[str, str]]:
    with db.transaction() as s:
        return [(v.operator, v.verdict) for v in s.scalars(select(Verdict))]


def login_form_token(client: TestClient) -> str:
    page = client.get("/login")
    return page.text.split('name="csrf_token" value="')[1].split('"')[0]


def test_cookie_copied_before_logout_is_refused_after(client: TestClient, db: Database) -> None:
    csrf = login(client)
    thief = copied(client)
    assert thief.get("/api/me").json()["operator"] == "alice"  # the copy works while the session lives
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert thief.get("/api/me").status_code == 401
    assert thief.get("/queue").status_code == 303  # to the login page
    assert thief.post(VERDICT, data={"verdict": "confirm", "csrf_token": csrf}).status_code == 401
    assert verdicts(db) == []
    with db.transaction() as s:
        (row,) = s.scalars(select(ReviewSession)).all()
    assert row.revoked_at is not None and row.revoked_why == "logout"


def test_cookie_holds_an_opaque_token_and_the_database_only_its_hash(client: TestClient, ctx: ReviewContext,
                                                                     db: Database) -> None:
    login(client)
    cookie = client.cookies["patrol_session"]
    payload = URLSafeTimedSerializer(b"k" * 64, salt="patrol-review-session").loads(cookie)
    assert set(payload) == {"t"} and "alice" not in cookie
    with db.transaction() as s:
        (row,) = s.scalars(select(ReviewSession)).all()
    assert row.id == session_id_of(payload["t"]) and payload["t"] not in (row.id, row.csrf)


def test_a_signed_cookie_naming_a_user_no_longer_logs_in(client: TestClient) -> None:
    """The old cookie format (user name + CSRF token, signed with the app's key) is not a session."""
    forged = URLSafeTimedSerializer(b"k" * 64, salt="patrol-review-session").dumps({"u": "alice", "c": "x"})
    client.cookies.set("patrol_session", forged)
    assert client.get("/api/me").status_code == 401
    assert client.post(VERDICT, data={"verdict": "confirm", "csrf_token": "x"}).status_code == 401


def test_deleted_operators_session_cannot_post_a_verdict(client: TestClient, db: Database) -> None:
    csrf = login(client)
    remove_operator(db, "alice")
    r = client.post(VERDICT, data={"verdict": "confirm", "csrf_token": csrf})
    assert r.status_code == 401
    api = client.post("/api/incidents/inc-a-000001/verdict", json={"verdict": "reject", "reason": "x"},
                      headers={"X-CSRF-Token": csrf})
    assert api.status_code == 401
    assert verdicts(db) == []
    with db.transaction() as s:
        assert s.scalars(select(ReviewSession)).all() == []  # deleted with the account


def test_disabled_operators_session_ends_and_login_is_refused(client: TestClient, db: Database) -> None:
    csrf = login(client)
    other = TestClient(client.app, follow_redirects=False)
    bob_csrf = login(other, "bob", PASSWORD + "!")
    disable_operator(db, "alice")
    assert client.post(VERDICT, data={"verdict": "confirm", "csrf_token": csrf}).status_code == 401
    assert other.post(VERDICT, data={"verdict": "confirm", "csrf_token": bob_csrf}).status_code == 303  # bob's lives
    assert verdicts(db) == [("bob", "confirm")]
    token = login_form_token(client)
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 401
    disable_operator(db, "alice", disabled=False)
    login(client)  # enabled again: logs in (a new session; the revoked one stays revoked)


def test_sixty_wrong_passwords_meet_a_growing_delay_then_a_lockout(ctx: ReviewContext, db: Database) -> None:
    clock = FakeClock()
    ctx.clock = clock
    client = TestClient(create_app(ctx), follow_redirects=False)
    token = login_form_token(client)
    answers: list[tuple[int, int | None]] = []
    for _ in range(60):  # 6.7 attempts a second, as measured
        r = client.post("/login", data={"username": "alice", "password": "wrong guess", "csrf_token": token})
        retry = r.headers.get("retry-after")
        answers.append((r.status_code, int(retry) if retry else None))
        clock.t += 0.15
    statuses = [s for s, _ in answers]
    assert statuses[:5] == [401] * 5 and all(w is None for _, w in answers[:5])  # typos cost nothing
    assert answers[5] == (401, 1)  # the sixth failure: wait 1 s
    assert statuses.count(401) < 12  # most of the 60 never reach the password check
    assert statuses.count(429) >= 48 and all(w and w > 0 for s, w in answers if s == 429)
    assert "Too many failed logins" in client.post(
        "/login", data={"username": "alice", "password": "x", "csrf_token": token}).text

    # an attacker who waits out every delay: the delay doubles, then the account locks
    waits = []
    while True:
        wait = client.post("/login", data={"username": "alice", "password": "x", "csrf_token": token})
        assert wait.status_code == 429
        clock.t += int(wait.headers["retry-after"]) + 0.01
        r = client.post("/login", data={"username": "alice", "password": "wrong", "csrf_token": token})
        assert r.status_code == 401
        waits.append(int(r.headers["retry-after"]))
        if waits[-1] >= ACCOUNT_THROTTLE.lockout_s:
            break
        assert len(waits) < 30
    growing = waits[:-1]
    assert growing == sorted(growing) and growing[-1] > growing[0] and len(set(growing)) >= 3
    # locked: even the right password is refused, without being checked, until the window passes
    right = {"username": "alice", "password": PASSWORD, "csrf_token": token}
    locked = client.post("/login", data=right)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 800
    clock.t += ACCOUNT_THROTTLE.lockout_s - 10
    assert client.post("/login", data=right).status_code == 429
    clock.t += 11
    assert client.post("/login", data=right).status_code == 303
    # a good login clears the account's count, never the address's (one's own account must not reset
    # the count of guesses at others')
    with db.transaction() as s:
        keys = {r.key: r.failures for r in s.scalars(select(LoginThrottle))}
    assert keys == {"addr:testclient": 20}


def test_one_address_trying_many_accounts_is_throttled_too(ctx: ReviewContext) -> None:
    clock = FakeClock()
    ctx.clock = clock
    client = TestClient(create_app(ctx), follow_redirects=False)
    token = login_form_token(client)
    statuses = []
    for i in range(40):  # 40 different names, 2 tries each: no account reaches its own limit
        for _ in range(2):
            r = client.post("/login", data={"username": f"user{i}", "password": "guess", "csrf_token": token})
            statuses.append(r.status_code)
            clock.t += 0.15
    assert statuses[:20] == [401] * 20
    assert statuses.count(429) > 40
    # bob, from this address, must wait as well
    r = client.post("/login", data={"username": "bob", "password": PASSWORD + "!", "csrf_token": token})
    assert r.status_code == 429


def test_hsts_iff_secure_cookies(ctx: ReviewContext) -> None:
    plain = TestClient(create_app(ctx), follow_redirects=False)
    assert "strict-transport-security" not in plain.get("/login").headers
    assert "strict-transport-security" not in plain.get("/queue").headers
    ctx.secure_cookies = True
    secure = TestClient(create_app(ctx), base_url="https://testserver", follow_redirects=False)
    for path in ("/login", "/queue", "/api/me"):
        assert secure.get(path).headers["strict-transport-security"].startswith("max-age=31536000"), path
    fresh = TestClient(secure.app, base_url="https://testserver", follow_redirects=False)
    assert "secure" in fresh.get("/login").headers["set-cookie"].lower()


def test_accounts_have_roles_and_a_department_member_names_its_department(db: Database) -> None:
    import pytest

    from review.security import ReviewError
    from review.server import add_operator
    from storage import repository as repo

    add_operator(db, "erin", PASSWORD, role="engineer")
    add_operator(db, "dora", PASSWORD, role="department", department="urban_management")
    with pytest.raises(ReviewError, match="needs --department"):
        add_operator(db, "dan", PASSWORD, role="department")
    with pytest.raises(ReviewError, match="only for role 'department'"):
        add_operator(db, "eve", PASSWORD, role="engineer", department="traffic_police")
    with pytest.raises(ReviewError, match="use one of operator, department, engineer, admin"):
        add_operator(db, "root", PASSWORD, role="superuser")
    with db.transaction() as s:
        roles = {o.username: (o.role, o.department) for o in repo.list_operators(s)}
    assert roles == {"alice": ("operator", None), "bob": ("operator", None), "erin": ("engineer", None),
                     "dora": ("department", "urban_management")}


def test_sessions_ended_a_day_ago_are_deleted_at_the_next_login(ctx: ReviewContext, db: Database) -> None:
    clock = FakeClock()
    ctx.clock = clock
    client = TestClient(create_app(ctx), follow_redirects=False)
    csrf = login(client)
    client.post("/logout", data={"csrf_token": csrf})
    clock.t += 3600
    login(client)
    with db.transaction() as s:
        assert len(s.scalars(select(ReviewSession)).all()) == 2  # the revoked one is kept a day
    clock.t += 86_400 + 1
    login(TestClient(client.app, follow_redirects=False), "bob", PASSWORD + "!")
    with db.transaction() as s:
        rows = s.scalars(select(ReviewSession)).all()
    assert len(rows) == 2 and all(r.revoked_at is None for r in rows)  # alice's second (ended < 1 day ago), bob's
