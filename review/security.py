"""Passwords, sessions and CSRF for the review page.

- Passwords are stored as argon2id hashes (argon2-cffi); a login for an unknown user still runs one
  verification against a dummy hash, so timing does not tell which users exist.
- The session is a cookie signed with itsdangerous (``URLSafeTimedSerializer``), expiring after
  ``max_age_s``; it holds the user name and the session's CSRF token, nothing else.
- Every POST must carry that token (form field ``csrf_token`` or header ``X-CSRF-Token``);
  compared in constant time.
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    user: str | None = None


class SessionCodec:
    def __init__(self, secret: bytes, max_age_s: int) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="patrol-review-session")
        self.max_age_s = max_age_s

    def dumps(self, session: Session) -> str:
        payload: dict[str, Any] = {"c": session.csrf}
        if session.user:
            payload["u"] = session.user
        return self._s.dumps(payload)

    def loads(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._s.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # includes SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        user = data.get("u")
        return Session(csrf=data["c"], user=user if isinstance(user, str) else None)


def new_session(user: str | None = None) -> Session:
    return Session(csrf=secrets.token_urlsafe(32), user=user)


def csrf_ok(session: Session | None, token: str | None) -> bool:
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())
