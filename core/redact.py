"""Keep stream credentials and config secrets out of every log line, exception, metric label and message.

Two layers: any ``scheme://user:password@`` in free text loses its password (the URL pattern), and every
secret the config loader registered (:func:`register_secret`: camera URL passwords, the broker password,
values read from ``*_file`` keys or ``${VAR}`` in secret fields) is replaced by ``***`` wherever it
appears, URL or not.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote, urlsplit, urlunsplit

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*)(?::[^@/\s]*)?@")
MIN_SECRET_CHARS = 4
"""Registered secrets shorter than this are not replaced in free text (a 2-letter password would blot out
every word holding those letters); in a URL they are still redacted by the pattern."""
MASK = "***"

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Redact ``value`` (and its URL-decoded form) from all text :func:`redact_text` sees, from now on."""
    global _secrets, _pattern
    forms = {v for v in (value, unquote(value)) if len(v) >= MIN_SECRET_CHARS}
    with _lock:
        known = set(_secrets)
        if forms <= known:
            return
        _secrets = tuple(sorted(known | forms, key=len, reverse=True))  # longest first: no partial leftovers
        _pattern = re.compile("|".join(map(re.escape, _secrets)))


def register_url_secret(url: str) -> None:
    """Register the password part of ``scheme://user:password@host/...`` (nothing for a URL without one)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return
    if password:
        register_secret(password)


def forget_secrets() -> None:
    """Drop every registered secret (tests that check registration start from nothing)."""
    global _secrets, _pattern
    with _lock:
        _secrets, _pattern = (), None


def redact_url(url: str) -> str:
    """``rtsp://admin:secret@host/x`` -> ``rtsp://admin:***@host/x``; other text unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None and "@" not in parts.netloc:
        return _mask_registered(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    netloc = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
    return _mask_registered(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))


def redact_text(text: str) -> str:
    """Redact every ``scheme://user:password@`` found anywhere in free text, and every registered secret."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@" if m["user"] else f"{m['scheme']}{MASK}@",
                         text)
    return _mask_registered(text)


def _mask_registered(text: str) -> str:
    pattern = _pattern
    return text if pattern is None else pattern.sub(MASK, text)
