"""The incident event: what rules emit, what the outbox stores and what MQTT carries.

This is the contract with the ticket system. ``incident_id`` is stable for one problem at one
place, ``seq`` counts that incident's events from 1, so a consumer can drop redeliveries and
keep order per incident.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from core.topics import DEFAULT_PREFIX, Topics

IncidentType = Literal["illegal_parking", "street_stall", "fallen_branch", "obstruction", "camera_offline"]
EventType = Literal["opened", "updated", "closed"]
Severity = Literal["low", "medium", "high"]

SCHEMA_VERSION: Literal[1] = 1


class EvidenceBox(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(description="COCO class name, or 'static_region' for background-model regions.")
    score: float = Field(ge=0, le=1)
    xyxy: tuple[float, float, float, float] = Field(description="Pixel box in the analysed frame.")
    track_id: int | None = None


class Evidence(BaseModel):
    """What made the rule fire, in numbers an operator and an engineer can read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    boxes: tuple[EvidenceBox, ...] = ()
    durations: dict[str, float] = Field(default_factory=dict,
                                        description="Named durations in seconds, e.g. dwell_s.")
    signals: dict[str, float] = Field(default_factory=dict,
                                      description="Named evidence that fired and its weight or value.")
    thresholds: dict[str, float] = Field(default_factory=dict, description="Rule thresholds in force.")
    frame_size: tuple[int, int] | None = Field(default=None, description="(width, height) of the frame.")
    links: dict[str, str] = Field(default_factory=dict,
                                  description="Evidence links (clip, snapshot, manifest) once written.")
    error: str | None = Field(default=None, max_length=500,
                              description="Why the evidence files could not be written (the incident goes "
                                          "on without them); null when they were or none were asked for.")


class IncidentEvent(BaseModel):
    """One lifecycle event of one incident."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    incident_id: str = Field(min_length=8, max_length=80, description="Stable id of the incident.")
    seq: int = Field(ge=1, description="Sequence number of this event within the incident, from 1.")
    event: EventType
    type: IncidentType
    camera_id: str
    grid_cell: str
    zone_id: str | None = None
    location: tuple[float, float] | None = Field(
        default=None, description="Normalised (x, y) ground point of the problem in the camera view.")
    severity: Severity = "medium"
    started_at: float = Field(description="Unix time the problem started (rule's own estimate).")
    event_at: float = Field(description="Unix time of this event.")
    stream_pts: float | None = Field(default=None, description="Stream time (s) of this event.")
    evidence: Evidence = Evidence()
    reason: str | None = Field(
        default=None, max_length=64,
        description="Why the pipeline, not the rule, ended the incident: 'pipeline_stopped' (closed at a "
                    "graceful stop), 'pipeline_restarted' (left open by a crash, not seen again after the "
                    "restart); null otherwise.")

    def topic(self, prefix: str = DEFAULT_PREFIX) -> str:
        return Topics(prefix).incident(self.type, self.camera_id)

    def to_json(self) -> str:
        """The event as JSON, encoded once: the database row, the outbox row and stdout share it."""
        return self._encoded

    @cached_property
    def _encoded(self) -> str:
        return self.model_dump_json()

    def model_copy(self, *, update: Any = None, deep: bool = False) -> Self:
        """A copy (with ``update``) that encodes itself, not the original's cached JSON."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("_encoded", None)
        return copied

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema()
