"""Passwords, sessions, roles, login throttling and CSRF for the review page.

- Passwords are stored as argon2id hashes (argon2-cffi); a login for an unknown user still runs one
  verification against a dummy hash, so timing does not tell which users exist.
- Sessions are kept server-side (``review_sessions``): after login the cookie holds an opaque random
  token (signed with itsdangerous, so a tampered cookie is refused before the database is asked) and
  the database only its SHA-256. Logout, deleting an operator and disabling one revoke the session in
  the database, so a copied cookie stops working at once. Before login the cookie holds only a CSRF
  token for the login form.
- Every POST must carry the session's CSRF token (form field ``csrf_token`` or header
  ``X-CSRF-Token``); compared in constant time.
- Failed logins are counted per account and per address (:class:`ThrottlePolicy`): after a few free
  failures each further one makes the next attempt wait twice as long, and past a limit the key is
  locked out for a window; a login while a key waits is answered 429 with ``Retry-After`` and the
  password is not even checked.
- Roles (:data:`ROLES`): operator (reviews incidents), department (a department's member, with its
  department), engineer (cameras and zones), admin (everything).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from core.errors import PatrolError

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_PASSWORD = 8
COOKIE = "patrol_session"
ROLES = ("operator", "department", "engineer", "admin")
"""Every account has one; ``admin`` may do what every other role may."""

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not-a-real-password-" + secrets.token_hex(8))


class ReviewError(PatrolError):
    """The review page cannot start or an operator account cannot be made."""


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise ReviewError(f"operator name {username!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return username


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ReviewError(f"password too short: at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; runs a full verification even when there is no such user."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def load_or_create_secret(path: str | Path) -> bytes:
    """The session signing key: read from ``path``, or created there with mode 600."""
    p = Path(path)
    try:
        data = p.read_bytes().strip()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ReviewError(f"{p}: cannot read the session key: {exc.strerror or exc}") from exc
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key
    except OSError as exc:
        raise ReviewError(f"{p}: cannot create the session key: {exc.strerror or exc}") from exc


def check_role(role: str, department: str | None) -> tuple[str, str | None]:
    """A valid (role, department): a department member names its department, nobody else does."""
    if role not in ROLES:
        raise ReviewError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if role == "department":
        if not department or not department.strip() or len(department) > 64:
            raise ReviewError("role 'department' needs --department NAME (1-64 characters), the department "
                              "whose tickets the member handles (as in tickets.routes)")
        return role, department.strip()
    if department:
        raise ReviewError(f"--department is only for role 'department', not {role!r}")
    return role, None


@dataclass(frozen=True, slots=True)
class Session:
    """Who is asking: a visitor (``user`` None, only a CSRF token) or a logged-in operator."""

    csrf: str
    user: str | None = None
    role: str | None = None
    department: str | None = None
    session_id: str | None = None
    """SHA-256 of the cookie's token: the ``review_sessions`` row (None for a visitor)."""

    def has_role(self, *roles: str) -> bool:
        return self.role is not None and (self.role in roles or self.role == "admin")


@dataclass(frozen=True, slots=True)
class CookieData:
    """What a valid cookie holds: a visitor's CSRF token, or a logged-in session's opaque token."""

    csrf: str | None = None
    token: str | None = None


def session_id_of(token: str) -> str:
    """The database key of a session token (its SHA-256, hex): the table never holds the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


class SessionCodec:
    """Signs and checks the cookie; ``max_age_s`` is how long a cookie (and a session) lives."""

    def __init__(self, secret: bytes, max_age_s: int) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="patrol-review-session")
        self.max_age_s = max_age_s

    def dumps(self, session: Session) -> str:
        """A visitor's cookie (only the CSRF token: never a user name)."""
        payload: dict[str, Any] = {"c": session.csrf}
        return self._s.dumps(payload)

    def dumps_token(self, token: str) -> str:
        """A logged-in session's cookie: the opaque token only."""
        return self._s.dumps({"t": token})

    def loads(self, cookie: str | None) -> CookieData | None:
        if not cookie:
            return None
        try:
            data = self._s.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # includes SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        token, csrf = data.get("t"), data.get("c")
        if isinstance(token, str) and token:
            return CookieData(token=token)
        if isinstance(csrf, str) and csrf:
            return CookieData(csrf=csrf)
        return None


def new_session(user: str | None = None) -> Session:
    return Session(csrf=secrets.token_urlsafe(32), user=user)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How failed logins of one key (an account or an address) slow down the next attempt.

    The first ``free_failures`` cost nothing (people mistype); the n-th failure after them makes the
    next attempt wait ``base_delay_s * 2**(n-1)`` seconds (at most ``max_delay_s``); at
    ``lockout_failures`` the key is locked for ``lockout_s``. A key whose last failure is older than
    ``forget_after_s`` (and that waits no more) starts again from zero; a good password clears the
    account's key (never the address's: one's own account must not reset the count of guesses at
    others' accounts)."""

    free_failures: int
    lockout_failures: int
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    lockout_s: float = 900.0
    forget_after_s: float = 900.0

    def blocked_until(self, failures: int, now: float) -> float:
        """When the next attempt is allowed after the ``failures``-th failure at ``now``."""
        if failures >= self.lockout_failures:
            return now + self.lockout_s
        over = failures - self.free_failures
        if over <= 0:
            return now
        return now + min(self.base_delay_s * 2 ** (over - 1), self.max_delay_s)

    def current_failures(self, failures: int, last_failure_at: float, blocked_until: float, now: float) -> int:
        """The count that still holds at ``now`` (forgotten after a quiet ``forget_after_s``)."""
        if blocked_until <= now and now - last_failure_at > self.forget_after_s:
            return 0
        return failures


ACCOUNT_THROTTLE = ThrottlePolicy(free_failures=5, lockout_failures=20)
"""Per account name: 5 free failures, then 1, 2, 4, ... s; the 20th failure locks it 15 minutes."""
ADDRESS_THROTTLE = ThrottlePolicy(free_failures=20, lockout_failures=100)
"""Per client address (several accounts tried from one place): 20 free, locked at the 100th."""


def csrf_ok(session: Session | None, token: str | None) -> bool:
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())
