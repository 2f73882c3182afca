"""What a message must be before the ticket service lets it near the database.

Python's ``json`` accepts what no database (and no other JSON reader) should get: ``NaN`` and
``Infinity`` literals, ``1e999`` (read as infinity), integers of any size and strings holding NUL;
its decoder raises ``RecursionError`` on deep nesting. And the schema of the incident event leaves
string lengths open, while the tables have limits. So every received payload goes through
:func:`parse_json` (size, raw NUL bytes, UTF-8, depth, finite numbers, 64-bit integers, no NUL in any
string) and every event through :func:`check_event_fits` (each value fits the column it goes to,
limits read from :mod:`storage.models`). A failure raises :class:`Rejected` with a reason that names
the field, the value's size and the limit; the service dead-letters the message with that reason.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, SmallInteger, String

from core.events import IncidentEvent
from storage.models import EvidenceRef, InboxRow, Incident, Ticket

MAX_DEPTH = 16
"""Deepest nesting of arrays and objects accepted. An incident event nests 5 deep (event, evidence,
boxes, a box, its xyxy); anything far deeper is an attack or a bug, and Python's decoder (and the
schema validator) recurse per level."""
INT64 = (-(2**63), 2**63 - 1)
"""Integers outside signed 64 bits fit no column of any database we use: refused wherever they are."""
MAX_INT_DIGITS = 20
"""Longest integer literal parsed (2**63 has 19 digits): longer ones are refused before int() is called."""


class Rejected(Exception):
    """A message that cannot be applied and goes to the dead-letter table; the text is the reason."""


# ---------------------------------------------------------------- JSON

def _refuse_constant(name: str) -> Any:
    raise Rejected(f"not a finite number: {name} (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Rejected(f"not a finite number: {text[:40]} is out of the float range")
    return value


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        raise Rejected(f"integer with {len(digits)} digits is outside the signed 64-bit range")
    value = int(text)
    if not INT64[0] <= value <= INT64[1]:
        raise Rejected(f"integer {value} is outside the signed 64-bit range")
    return value


def _path(parts: tuple[str | int, ...]) -> str:
    return "/".join(str(p) for p in parts) or "(top level)"


def _walk(value: Any, max_depth: int) -> None:
    """Depth and NUL characters of a parsed value, iteratively (no recursion on hostile input)."""
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(value, (), 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise Rejected(f"JSON nested deeper than {max_depth} levels at {_path(where)}")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str) and "\x00" in key:
                    raise Rejected(f"NUL character (\\u0000) in the key {key!r} at {_path(where)}")
                stack.append((child, (*where, key), depth + 1))
        elif isinstance(item, str) and "\x00" in item:
            raise Rejected(f"NUL character (\\u0000) in the string at {_path(where)}")


def parse_json(payload: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The payload as JSON, or :class:`Rejected` saying what is wrong with it and where."""
    if len(payload) > max_bytes:
        raise Rejected(f"oversized: {len(payload)} bytes > limit {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    nul = payload.find(b"\x00")
    if nul >= 0:
        raise Rejected(f"raw NUL byte at byte {nul}")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                           parse_int=_bounded_int)
    except RecursionError as exc:
        raise Rejected(f"JSON nested deeper than {max_depth} levels (too deep to parse)") from exc
    except json.JSONDecodeError as exc:
        raise Rejected(f"not JSON: {exc}") from exc
    _walk(value, max_depth)
    return value


# ---------------------------------------------------------------- what fits the tables

def int_range(column: Column[Any]) -> tuple[int, int]:
    """The integers ``column`` holds on every database we use (INTEGER is 32-bit on PostgreSQL)."""
    if isinstance(column.type, SmallInteger):
        return -(2**15), 2**15 - 1
    if isinstance(column.type, BigInteger):
        return INT64
    if isinstance(column.type, Integer):
        return -(2**31), 2**31 - 1
    raise TypeError(f"column {column.table.name}.{column.name} is not an integer column")


def _column(model: Any, name: str) -> Column[Any]:
    column: Column[Any] = model.__table__.c[name]
    return column


def check_length(field: str, value: str | None, column: Column[Any]) -> None:
    """``value`` fits the String column, else :class:`Rejected` naming the field, length and column."""
    if value is None or not isinstance(column.type, String) or column.type.length is None:
        return
    if len(value) > column.type.length:
        raise Rejected(f"{field}: {len(value)} characters > {column.type.length}, the limit of column "
                       f"{column.table.name}.{column.name}")


def check_int(field: str, value: int, column: Column[Any]) -> None:
    low, high = int_range(column)
    if not low <= value <= high:
        raise Rejected(f"{field}: {value} is outside {low}..{high}, the range of column "
                       f"{column.table.name}.{column.name}")


_EVENT_STRINGS: tuple[tuple[str, Column[Any]], ...] = (
    ("incident_id", _column(Incident, "id")),
    ("type", _column(Incident, "type")),
    ("camera_id", _column(Incident, "camera_id")),
    ("grid_cell", _column(Incident, "grid_cell")),
    ("zone_id", _column(Incident, "zone_id")),
    ("severity", _column(Incident, "severity")),
)


def check_event_fits(ev: IncidentEvent) -> None:
    """Every value of ``ev`` that gets a column of its own fits it (length, integer range)."""
    for field, column in _EVENT_STRINGS:
        check_length(field, getattr(ev, field), column)
    check_int("seq", ev.seq, _column(InboxRow, "seq"))
    for kind, path in ev.evidence.links.items():
        check_length("evidence/links (kind)", kind, _column(EvidenceRef, "kind"))
        check_length(f"evidence/links/{kind[:32]}", path, _column(EvidenceRef, "path"))


def check_verify_result(raw: Any) -> dict[str, Any]:
    """A verify result's fields: integer ticket_id the tickets table can hold, a request id of the
    length the service makes, a boolean ``present``."""
    if not isinstance(raw, dict):
        raise Rejected("verify result: expected a JSON object")
    ticket_id, request_id, present = raw.get("ticket_id"), raw.get("request_id"), raw.get("present")
    if not isinstance(ticket_id, int) or isinstance(ticket_id, bool) or not isinstance(request_id, str) \
            or not isinstance(present, bool):
        raise Rejected("verify result: needs integer ticket_id, string request_id and boolean present")
    check_int("ticket_id", ticket_id, _column(Ticket, "id"))
    check_length("request_id", request_id, _column(Ticket, "verify_request_id"))
    camera = raw.get("camera_id")
    if camera is not None and not isinstance(camera, str):
        raise Rejected("verify result: camera_id must be a string when given")
    return raw
