"""Server-side sessions and the login throttle, on the tables of migration 0004.

The policy (what a cookie holds, how the delay grows) is in :mod:`review.security`; this module only
applies it to the database. Every function takes the time ``now`` from the caller (the app's clock,
:attr:`review.deps.ReviewContext.clock`), so tests drive it with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from review.security import (
    ACCOUNT_THROTTLE,
    ADDRESS_THROTTLE,
    CookieData,
    Session,
    ThrottlePolicy,
    new_session_token,
    session_id_of,
)
from storage import repository as repo
from storage.db import Database
from storage.models import Operator

PURGE_AFTER_S = 86_400.0
"""A session expired or revoked more than a day ago is deleted at the next login (kept a day for
whoever looks into a revocation)."""


def throttle_keys(username: str, address: str | None) -> list[tuple[str, ThrottlePolicy]]:
    """The keys one login attempt counts against: the account name (case-folded) and the address."""
    keys = [("user:" + username.strip().casefold()[:64], ACCOUNT_THROTTLE)]
    if address:
        keys.append(("addr:" + address[:64], ADDRESS_THROTTLE))
    return keys


def login_wait_s(db: Database, username: str, address: str | None, now: float) -> float:
    """Seconds until a login for ``username`` from ``address`` may be tried (0: now)."""
    keys = throttle_keys(username, address)
    with db.transaction() as s:
        rows = repo.login_throttles(s, [k for k, _ in keys])
    return max([0.0, *(rows[k].blocked_until - now for k, _ in keys if k in rows)])


def record_login_failure(db: Database, username: str, address: str | None, now: float) -> float:
    """Count a wrong password against the account and the address; returns the seconds the next
    attempt must wait."""
    keys = throttle_keys(username, address)
    wait = 0.0
    with db.transaction() as s:
        rows = repo.login_throttles(s, [k for k, _ in keys])
        for key, policy in keys:
            row = rows.get(key)
            failures = 1 + (policy.current_failures(row.failures, row.last_failure_at, row.blocked_until, now)
                            if row is not None else 0)
            until = policy.blocked_until(failures, now)
            repo.record_login_failure(s, key, failures=failures, at=now, blocked_until=until)
            wait = max(wait, until - now)
    return wait


@dataclass(frozen=True, slots=True)
class Started:
    token: str
    """For the cookie only: never stored."""
    session: Session


def start_session(db: Database, username: str, *, now: float, max_age_s: float, address: str | None,
                  csrf: str) -> Started | None:
    """A new session for an enabled account after its password was checked (None: no such enabled
    account); clears the account's failed-login count."""
    token = new_session_token()
    sid = session_id_of(token)
    with db.transaction() as s:
        op = repo.get_operator(s, username)
        if op is None or op.disabled:
            return None
        repo.purge_review_sessions(s, now - PURGE_AFTER_S)
        repo.add_review_session(s, sid, op.id, csrf, at=now, expires_at=now + max_age_s, address=address)
        repo.clear_login_failures(s, throttle_keys(username, None)[0][0])
        return Started(token, _session(sid, csrf, op))


def session_from_cookie(db: Database, data: CookieData | None, now: float) -> Session | None:
    """The session a cookie stands for: a visitor's, or a live logged-in one from the database
    (None when the cookie is invalid, or its session was revoked, expired, or its account deleted or
    disabled)."""
    if data is None:
        return None
    if data.token is None:
        return Session(csrf=data.csrf) if data.csrf else None
    sid = session_id_of(data.token)
    with db.transaction() as s:
        found = repo.live_review_session(s, sid, now)
        if found is None:
            return None
        row, op = found
        if now - row.last_seen_at > 60:  # at most one write a minute per session
            repo.touch_review_session(s, sid, now)
        return _session(sid, row.csrf, op)


def end_session(db: Database, session: Session | None, now: float, why: str = "logout") -> None:
    if session is not None and session.session_id is not None:
        with db.transaction() as s:
            repo.revoke_review_session(s, session.session_id, now, why)


def _session(sid: str, csrf: str, op: Operator) -> Session:
    return Session(csrf=csrf, user=op.username, role=op.role, department=op.department, session_id=sid)
