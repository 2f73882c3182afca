"""The published JSON Schema of the incident payload, generated from :class:`IncidentEvent`.

The committed file ``incident_event.v1.json`` is what consumers outside Python read; a test checks
it equals :func:`incident_event_schema`. Regenerate with ``python -m core.schema``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from core.events import SCHEMA_VERSION, IncidentEvent

SCHEMA_FILE = Path(__file__).with_name(f"incident_event.v{SCHEMA_VERSION}.json")
SCHEMA_ID = f"https://bright-patrol.example/schema/incident_event.v{SCHEMA_VERSION}.json"


def incident_event_schema() -> dict[str, Any]:
    schema = IncidentEvent.json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "description": (f"Bright Patrol incident event, MQTT topic patrol/v{SCHEMA_VERSION}/incidents/"
                            "{type}/{camera_id}, QoS 1. Consumers dedupe on (incident_id, seq)."),
            **schema}


def render() -> str:
    return json.dumps(incident_event_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@cache
def validator() -> Draft202012Validator:
    """A validator over the committed file (what a consumer outside Python would use)."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(payload: Any) -> list[str]:
    """Every schema violation of ``payload`` as 'path: message', empty when valid."""
    out = []
    for err in sorted(validator().iter_errors(payload), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{where}: {err.message}")
    return out
