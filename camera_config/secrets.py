"""Secrets kept out of the site file: ``${VAR}`` from the environment, ``<field>_file`` from a file.

    cameras:
      - id: gate
        url: rtsp://viewer:${GATE_PASSWORD}@10.0.0.7/ch1   # any string value may use ${VAR}
    mqtt:
      username: pipeline
      password_file: /run/secrets/mqtt_password          # instead of password: ...

``${VAR}`` works in every string value (``$${`` is a literal ``${``); a variable that is not set is one
error naming the variable and the field. A ``<field>_file`` key is accepted for the secret fields
(:data:`SECRET_FIELDS`): the file's text, without its trailing newline, becomes the field; a relative
path is relative to the config file's folder. Giving both the field and its ``_file`` key is an error.

Every value of a secret field is registered with :mod:`core.redact`, so it is masked in every log line,
error and printed output from then on. This runs in the loader, before validation: the schema itself
stays pure (no I/O, no environment).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from core.redact import register_secret, register_url_secret

Loc = tuple[int | str, ...]

SECRET_FIELDS: tuple[tuple[str, ...], ...] = (
    ("cameras", "*", "url"),
    ("mqtt", "password"),
    ("mqtt", "accounts", "*", "password"),
    ("database", "url"),
)
"""Field paths ("*" = any list index or mapping key) that hold secrets: they take a ``_file`` key and
their values are redacted everywhere."""
MAX_SECRET_FILE_BYTES = 65_536
"""A password or URL file is a line; anything larger is a wrong path (a video, a log)."""
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class SecretProblem:
    loc: Loc
    message: str


def is_secret_field(loc: Loc) -> bool:
    return any(len(p) == len(loc) and all(a == "*" or a == b for a, b in zip(p, loc, strict=True))
               for p in SECRET_FIELDS)


def expand_env(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` with each ``${NAME}`` replaced from ``env``; the problems found (unset or malformed)."""
    problems: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name = m.group(1)
        if not m.group(0).endswith("}") or name is None or not _NAME.fullmatch(name):
            problems.append(f"malformed reference {m.group(0)!r}: write ${{NAME}} with NAME of letters, digits "
                            f"and _ (or $${{ for a literal ${{)")
            return m.group(0)
        if name not in env:
            problems.append(f"environment variable {name!r} is not set")
            return m.group(0)
        return env[name]

    return _REFERENCE.sub(sub, text), problems


def _read_secret_file(value: Any, base_dir: Path) -> tuple[str | None, str | None]:
    """(the file's text without its trailing newline, None) or (None, the problem)."""
    if not isinstance(value, str) or not value:
        return None, "expected the path of a file holding the secret"
    path = Path(value) if Path(value).is_absolute() else base_dir / value
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        return None, f"cannot read secret file {str(path)!r}: {exc.strerror or exc}"
    if len(data) > MAX_SECRET_FILE_BYTES:
        return None, f"secret file {str(path)!r} is larger than {MAX_SECRET_FILE_BYTES} bytes: not a secret"
    try:
        text = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None, f"secret file {str(path)!r} is not UTF-8 text"
    if not text:
        return None, f"secret file {str(path)!r} is empty"
    return text, None


def _register(field: int | str, value: str) -> None:
    """A URL field (a camera's, the database's) registers its password only: the rest of a URL, or a
    file path given as a camera URL, is no secret."""
    if field == "url":
        register_url_secret(value)
    else:
        register_secret(value)


def resolve_secrets(raw: Any, base_dir: Path, env: Mapping[str, str] | None = None) -> tuple[Any, list[SecretProblem]]:
    """A copy of ``raw`` with ``${VAR}`` expanded and ``<field>_file`` keys read; the problems found.

    Secret fields' values are registered for redaction as they are resolved."""
    environ = os.environ if env is None else env
    problems: list[SecretProblem] = []

    def walk(node: Any, loc: Loc) -> Any:
        if isinstance(node, str):
            text, found = expand_env(node, environ)
            problems.extend(SecretProblem(loc, p) for p in found)
            if is_secret_field(loc):
                _register(loc[-1], text)
            return text
        if isinstance(node, list):
            return [walk(item, (*loc, i)) for i, item in enumerate(node)]
        if not isinstance(node, dict):
            return node
        out: dict[Any, Any] = {}
        for key, value in node.items():
            stem = key[: -len("_file")] if isinstance(key, str) and key.endswith("_file") else None
            if stem and is_secret_field((*loc, stem)):
                if stem in node:
                    problems.append(SecretProblem((*loc, key), f"give either {stem!r} or {key!r}, not both"))
                    continue
                secret, problem = _read_secret_file(walk(value, (*loc, key)), base_dir)
                if secret is None:
                    problems.append(SecretProblem((*loc, key), problem or "unreadable"))
                    continue
                _register(stem, secret)
                out[stem] = secret
                continue
            out[key] = walk(value, (*loc, key))
        return out

    return walk(raw, ()), problems


def _secret_values(node: Any, field: int | str = "") -> Iterator[tuple[int | str, str]]:
    """(field name, value) of every ``SecretStr`` under ``node``."""
    if isinstance(node, SecretStr):
        yield field, node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secret_values(getattr(node, name), name)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _secret_values(item, field)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _secret_values(item, field)


def register_config_secrets(cfg: BaseModel) -> None:
    """Register every ``SecretStr`` in a validated config (sections added later are covered too)."""
    for field, value in _secret_values(cfg):
        _register(field, value)
