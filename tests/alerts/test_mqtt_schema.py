"""The published JSON Schema: committed file == generated from IncidentEvent; it accepts real events
and rejects what the ticket service must dead-letter."""

from __future__ import annotations

import json

import pytest

from core.schema import SCHEMA_FILE, incident_event_schema, render, schema_errors
from core.topics import Topics


def test_committed_schema_equals_generated() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render(), \
        "core/schema is stale: run `python -m core.schema` and commit"
    assert json.loads(SCHEMA_FILE.read_text())["$id"] == incident_event_schema()["$id"]


def test_a_real_event_validates(make_incident_event) -> None:
    assert schema_errors(json.loads(make_incident_event().to_json())) == []


@pytest.mark.parametrize(("change", "where"), [
    ({"seq": 0}, "seq"),
    ({"type": "jaywalking"}, "type"),
    ({"incident_id": "short"}, "incident_id"),
    ({"unexpected": 1}, "(top level)"),
    ({"location": [0.5]}, "location"),
])
def test_schema_violations_are_named(make_incident_event, change: dict, where: str) -> None:
    payload = {**json.loads(make_incident_event().to_json()), **change}
    problems = schema_errors(payload)
    assert problems and problems[0].startswith(where)


def test_missing_required_field() -> None:
    assert any("'incident_id' is a required property" in p for p in schema_errors({"seq": 1}))


@pytest.mark.parametrize(("topic", "parsed"), [
    ("patrol/v1/incidents/illegal_parking/cam-1", ("illegal_parking", "cam-1")),
    ("patrol/v1/incidents/illegal_parking", None),
    ("patrol/v1/incidents/a/b/c", None),
    ("patrol/v2/incidents/a/b", None),
])
def test_incident_topics(topic: str, parsed: tuple[str, str] | None) -> None:
    assert Topics().parse_incident(topic) == parsed
    assert Topics().incident("illegal_parking", "cam-1") == "patrol/v1/incidents/illegal_parking/cam-1"
