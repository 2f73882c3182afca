"""The published JSON Schema: committed file == generated from IncidentEvent; it accepts real events
and rejects what the ticket service must dead-letter."""

from __future__ import annotations

import json

import pytest

from core.schema import SCHEMA_FILE, incident_event_schema, render, schema_errors
from core.topics import Topics, matches, split_shared


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


@pytest.mark.parametrize(("topic_filter", "topic", "hit"), [
    ("patrol/v1/incidents/#", "patrol/v1/incidents/illegal_parking/cam-1", True),
    ("patrol/v1/incidents/#", "patrol/v1/incidents", True),  # '#' includes the parent level
    ("patrol/v1/verify/result/+", "patrol/v1/verify/result/cam-1", True),
    ("patrol/v1/verify/result/+", "patrol/v1/verify/result/cam-1/x", False),
    ("patrol/v1/health/+", "patrol/v1/verdicts/cam-1", False),
    ("#", "$SYS/broker/uptime", False),  # a '$' topic is not matched by a leading wildcard
])
def test_topic_filters_match_as_mqtt_does(topic_filter: str, topic: str, hit: bool) -> None:
    assert matches(topic_filter, topic) is hit


def test_every_topic_is_built_from_the_prefix() -> None:
    t = Topics("city/v2")
    assert [t.incidents, t.availability("pipe-1"), t.health("cam-1"), t.verify_request(), t.verify_result("cam-1"),
            t.verdict("cam-1"), t.replay_request] == [
        "city/v2/incidents/#", "city/v2/availability/pipe-1", "city/v2/health/cam-1", "city/v2/verify/request/+",
        "city/v2/verify/result/cam-1", "city/v2/verdicts/cam-1", "city/v2/replay/request"]
    assert split_shared(t.shared(t.incidents, "tickets")) == ("tickets", "city/v2/incidents/#")
    assert split_shared(t.incidents) == (None, "city/v2/incidents/#")
    with pytest.raises(ValueError, match="without wildcards"):
        Topics("city/#")


def test_an_event_is_encoded_once_on_its_way_out(tmp_path, make_incident_event, monkeypatch) -> None:
    """Database row, outbox row and stdout line share one encoding (they were three); a copy with
    changes (evidence links added) encodes itself."""
    import io

    from alerts.outbox import OutboxSink
    from core.events import IncidentEvent
    from patrol.commands.run import FanOutSink
    from pipeline.worker import JsonLinesSink
    from storage import repository as repo
    from storage.db import open_database

    encodings: list[str] = []
    original = IncidentEvent.model_dump_json

    def counting(self: IncidentEvent, **kw: object) -> str:
        encodings.append(self.incident_id)
        return original(self, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(IncidentEvent, "model_dump_json", counting)
    db = open_database(f"sqlite:///{tmp_path / 'once.db'}")
    out = io.StringIO()
    events = [make_incident_event("inc-once", 1), make_incident_event("inc-twice", 1)]
    FanOutSink(OutboxSink(db), JsonLinesSink(out)).publish(events)
    assert sorted(encodings) == ["inc-once", "inc-twice"]
    with db.transaction() as s:
        assert [r.payload for r in repo.pending_outbox(s)] == [e.to_json() for e in events]
    assert out.getvalue().splitlines() == [e.to_json() for e in events]
    db.dispose()

    moved = events[0].model_copy(update={"seq": 2})
    assert json.loads(moved.to_json())["seq"] == 2 and json.loads(events[0].to_json())["seq"] == 1
