"""Tables. Times are Unix seconds (float), like the incident events that fill them."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Incident(Base):
    """One problem at one place, as known from its lifecycle events."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    camera_id: Mapped[str] = mapped_column(String(64), index=True)
    grid_cell: Mapped[str] = mapped_column(String(64))
    zone_id: Mapped[str | None] = mapped_column(String(64))
    location_x: Mapped[float | None] = mapped_column(Float)
    location_y: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(16), default="medium")
    state: Mapped[str] = mapped_column(String(16), default="open")
    """open or closed, from the pipeline's point of view."""
    started_at: Mapped[float] = mapped_column(Float)
    last_event_at: Mapped[float] = mapped_column(Float)
    closed_at: Mapped[float | None] = mapped_column(Float)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    """Highest seq applied, contiguous from 1."""
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)


class IncidentEventRow(Base):
    """Lifecycle events of an incident, once each, applied in seq order."""

    __tablename__ = "incident_events"
    __table_args__ = (UniqueConstraint("incident_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(16))
    event_at: Mapped[float] = mapped_column(Float)
    payload: Mapped[str] = mapped_column(Text)


class EvidenceRef(Base):
    """A reference to an evidence file (clip, snapshot, manifest): never the bytes."""

    __tablename__ = "evidence"
    __table_args__ = (UniqueConstraint("incident_id", "kind", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)


class CameraHealth(Base):
    """Stream lost / restored, one row per change."""

    __tablename__ = "camera_health"
    __table_args__ = (Index("ix_camera_health_camera_at", "camera_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    detail: Mapped[str | None] = mapped_column(Text)


class Ticket(Base):
    """A case in the six-step loop; one or more incidents at one place join it."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(80), index=True)
    """The incident that opened the ticket."""
    type: Mapped[str] = mapped_column(String(32))
    camera_id: Mapped[str] = mapped_column(String(64))
    grid_cell: Mapped[str] = mapped_column(String(64))
    zone_id: Mapped[str | None] = mapped_column(String(64))
    location_x: Mapped[float | None] = mapped_column(Float)
    location_y: Mapped[float | None] = mapped_column(Float)
    department: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    due_at: Mapped[float] = mapped_column(Float)
    last_incident_at: Mapped[float] = mapped_column(Float)
    incident_count: Mapped[int] = mapped_column(Integer, default=1)
    verify_request_id: Mapped[str | None] = mapped_column(String(64))
    # --- loop (issue 15): the city platform's event category code (tickets.category_codes); migration 0005
    category_code: Mapped[str | None] = mapped_column(String(32))


class TicketHistory(Base):
    """Every transition of a ticket: who, when, from, to, why."""

    __tablename__ = "ticket_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[str | None] = mapped_column(Text)
    """JSON: what the verifier saw, or the incident that joined."""


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Float)
    # ---- review roles and sessions (camera engineer, migration 0004)
    role: Mapped[str] = mapped_column(String(16), default="operator", server_default="operator")
    """operator, department, engineer or admin (review.security.ROLES)."""
    department: Mapped[str | None] = mapped_column(String(64))
    """The department a ``department`` member serves (as in tickets.routes); None for other roles."""
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A disabled account cannot log in and its sessions are refused."""


class Verdict(Base):
    """An operator's confirm / reject of an incident."""

    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    operator: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[float] = mapped_column(Float)


class DeadLetter(Base):
    """A message the consumer could not use, kept with the reason."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(512))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    """At most the first 64 KiB; ``size`` holds the real length."""
    payload_text: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class OutboxRow(Base):
    """A message committed before it is published; ``sent`` only after the broker's PUBACK."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("incident_id", "seq"),
        Index("ix_outbox_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(512))
    payload: Mapped[str] = mapped_column(Text)
    incident_id: Mapped[str | None] = mapped_column(String(80))
    seq: Mapped[int | None] = mapped_column(Integer)
    retain: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float)


class InboxRow(Base):
    """Messages the ticket service received, once each (dedupe on incident id + seq)."""

    __tablename__ = "inbox"

    incident_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(512))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[float] = mapped_column(Float)
    applied_at: Mapped[float | None] = mapped_column(Float)
    apply_order: Mapped[int | None] = mapped_column(Integer)
    """Position in the order this database applied events (global counter)."""


# ---------------------------------------------------------------- review sessions and login throttle
# (camera engineer, migration 0004)

class ReviewSession(Base):
    """A logged-in session of the review page. The cookie holds an opaque random token; the database
    holds only its SHA-256, so a copy of this table logs nobody in."""

    __tablename__ = "review_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 (hex) of the cookie's token."""
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    revoked_why: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))


class LoginThrottle(Base):
    """Failed logins counted per key (``user:<name>`` or ``addr:<ip>``) for the growing delay."""

    __tablename__ = "review_login_throttle"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[float] = mapped_column(Float)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)
