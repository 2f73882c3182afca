"""``patrol tickets serve``: the consumer in front of :mod:`tickets.desk`.

Subscribes through an :class:`alerts.transport.Transport` (MQTT by default) with a persistent
session to the shared subscriptions ``$share/tickets/{prefix}/incidents/#`` and
``$share/tickets/{prefix}/verify/result/+`` and acknowledges a message (manual ack:
:meth:`alerts.transport.Message.ack`) only after its transaction committed. A message that cannot
be used (oversized, not JSON, against the schema, wrong topic) goes to ``dead_letters`` with the
reason and is acknowledged; the service keeps running. When the database fails, the message is not
acknowledged and the service reconnects after a pause, so the broker delivers it again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from pydantic import ValidationError

from alerts.outbox import OutboxPublisher
from alerts.transport import Endpoint, Message, Transport, TransportFactory
from camera_config.schema import MqttConfig, TicketsConfig
from core.events import IncidentEvent
from core.schema import schema_errors
from core.topics import TICKETS_GROUP, Topics
from storage import repository as repo
from storage.db import Database
from storage.errors import NotFound, StorageError
from tickets.desk import apply_event, apply_verify_result, retry_stale_verifications
from tickets.states import OPEN_STATES

log = logging.getLogger(__name__)


REPLAY_MARGIN_S = 60.0
"""Replays start this long before the last received message (clock skew, in-flight messages)."""
GAP_PATIENCE_S = 5.0
"""An event held this long for a missing predecessor triggers a replay request (repeated until filled)."""


class Rejected(Exception):
    """A message that goes to the dead-letter table; the text is the reason."""


def _json(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected(f"not JSON: {exc}") from exc


def decode_event(topics: Topics, topic: str, payload: bytes, max_bytes: int) -> IncidentEvent:
    if len(payload) > max_bytes:
        raise Rejected(f"oversized: {len(payload)} bytes > limit {max_bytes}")
    where = topics.parse_incident(topic)
    if where is None:
        raise Rejected(f"not an incident topic: {topic!r} (expected {topics.prefix}/incidents/TYPE/CAMERA)")
    raw = _json(payload)
    problems = schema_errors(raw)
    if problems:
        raise Rejected("schema: " + "; ".join(problems[:5]))
    try:
        ev = IncidentEvent.model_validate(raw)
    except ValidationError as exc:
        raise Rejected(f"invalid event: {exc.errors(include_url=False)[:3]}") from exc
    if (ev.type, ev.camera_id) != where:
        raise Rejected(f"topic {topic!r} does not match payload type={ev.type!r} camera={ev.camera_id!r}")
    return ev


def decode_verify_result(payload: bytes, max_bytes: int) -> dict[str, Any]:
    if len(payload) > max_bytes:
        raise Rejected(f"oversized: {len(payload)} bytes > limit {max_bytes}")
    raw = _json(payload)
    if not isinstance(raw, dict) or not isinstance(raw.get("ticket_id"), int) \
            or not isinstance(raw.get("present"), bool) or not isinstance(raw.get("request_id"), str):
        raise Rejected("verify result: needs integer ticket_id, string request_id and boolean present")
    return raw


class TicketService:
    """``mqtt_cfg`` gives the topic prefix, payload limit and base client id; ``transports`` the bus
    (default: MQTT from ``mqtt_cfg``)."""

    def __init__(self, db: Database, mqtt_cfg: MqttConfig, tickets_cfg: TicketsConfig, *,
                 client_id: str | None = None, transports: TransportFactory | None = None) -> None:
        self.db = db
        self.mqtt_cfg = mqtt_cfg
        self.cfg = tickets_cfg
        self.topics = Topics(mqtt_cfg.topic_prefix)
        self.client_id = client_id or f"{mqtt_cfg.client_id}-tickets"
        if transports is None:
            from alerts.mqtt import mqtt_transports

            transports = mqtt_transports(mqtt_cfg.for_role("tickets"))
        self.transports = transports
        self.counts: dict[str, int] = {}
        self._db_down = threading.Event()
        self._stop = threading.Event()
        self.transport = self._new_transport()
        self.publisher = OutboxPublisher(db, self.transport, topics=self.topics)

    def _new_transport(self) -> Transport:
        transport = self.transports(Endpoint(self.client_id, availability=self.topics.availability(self.client_id),
                                             persistent=True, manual_ack=True))
        transport.subscribe(self.topics.incidents, self._on_message, shared_group=TICKETS_GROUP)
        transport.subscribe(self.topics.verify_result(), self._on_message, shared_group=TICKETS_GROUP)
        transport.on_connected(self._ask_replay)
        return transport

    def _ask_replay(self, since: float | None = None) -> None:
        """Ask every pipeline to send again what it sent since shortly before our last message.

        A broker restart can drop messages for a shared subscription until we reconnect; the
        replayed duplicates are dropped by the (incident id, seq) dedupe.
        """
        if since is None:
            try:
                with self.db.transaction() as s:
                    last = repo.last_received_at(s)
            except StorageError as exc:
                log.error("cannot read the last receive time; asking for a full replay", extra={"error": str(exc)})
                last = None
            since = 0.0 if last is None else last - REPLAY_MARGIN_S
        self.transport.publish(self.topics.replay_request, json.dumps({"since": since, "by": self.client_id}))

    def _repair_gaps(self) -> None:
        """Events held for a missing earlier one for a while: the earlier one was lost, ask again."""
        try:
            with self.db.transaction() as s:
                oldest = repo.oldest_held_at(s, time.time() - GAP_PATIENCE_S)
        except StorageError:
            return
        if oldest is not None and self.transport.connected:
            log.warning("events wait for a missing earlier event; asking for a replay")
            self._ask_replay(since=oldest - REPLAY_MARGIN_S)

    # ---- one message
    def handle(self, topic: str, payload: bytes) -> str:
        """Process one message; returns the outcome. Raises StorageError when the database fails."""
        try:
            if self.topics.is_verify_result(topic):
                return "verify:" + apply_verify_result(self.db, decode_verify_result(
                    payload, self.mqtt_cfg.max_payload_bytes))
            ev = decode_event(self.topics, topic, payload, self.mqtt_cfg.max_payload_bytes)
            return apply_event(self.db, self.cfg, ev, topic)
        except (Rejected, NotFound) as exc:
            with self.db.transaction() as s:
                repo.add_dead_letter(s, topic, payload, str(exc))
            log.warning("dead-lettered a message", extra={"topic": topic, "reason": str(exc)[:200]})
            return "dead_letter"

    def _on_message(self, msg: Message) -> None:
        if self._db_down.is_set():
            return  # not acknowledged: redelivered after the reconnect
        try:
            outcome = self.handle(msg.topic, msg.payload)
        except StorageError as exc:
            log.error("database failed; message left unacknowledged", extra={"error": str(exc)})
            self._db_down.set()
            return
        except Exception:  # a bug must not kill the network thread; keep the message for later
            log.exception("unexpected error on a message; left unacknowledged", extra={"topic": msg.topic})
            self._db_down.set()
            return
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("message %s dup=%d -> %s", msg.topic, msg.duplicate, outcome,
                      extra={"payload_head": msg.payload[:60].decode("utf-8", "replace")})
        msg.ack()

    # ---- lifecycle
    def start(self) -> None:
        self.transport.start()
        self.publisher.start()

    def stop(self) -> None:
        self._stop.set()
        self.publisher.stop(flush_timeout_s=2.0)
        self.transport.stop()

    def run(self, stop: threading.Event, *, overdue_every_s: float = 60.0) -> None:
        """Serve until ``stop`` is set: reconnect after a database failure, log overdue tickets."""
        self.start()
        next_overdue = time.monotonic()
        next_repair = time.monotonic() + GAP_PATIENCE_S
        while not stop.wait(0.5):
            if self._db_down.is_set():
                self._recover()
            if time.monotonic() >= next_repair:
                next_repair = time.monotonic() + GAP_PATIENCE_S
                self._repair_gaps()
            if time.monotonic() >= next_overdue:
                next_overdue = time.monotonic() + overdue_every_s
                self._log_overdue()
                self._retry_verifications()
        self.stop()

    def _recover(self) -> None:
        """Drop the connection (unacked messages return), wait for the database, reconnect."""
        log.warning("reconnecting after a database failure")
        self.publisher.stop(flush_timeout_s=0)
        self.transport.stop(offline=False)
        while not self._stop.is_set():
            try:
                with self.db.transaction() as s:
                    repo.outbox_counts(s)
                break
            except StorageError:
                self._stop.wait(2.0)
        self._db_down.clear()
        self.transport = self._new_transport()
        self.publisher = OutboxPublisher(self.db, self.transport, topics=self.topics)
        self.start()

    def _retry_verifications(self) -> None:
        try:
            with self.db.transaction() as s:
                retried = retry_stale_verifications(s, time.time(), self.cfg, self.topics)
        except StorageError as exc:
            log.error("cannot retry verifications", extra={"error": str(exc)})
            return
        if retried:
            log.warning("verification unanswered; asked again", extra={"tickets": ",".join(map(str, retried))})
            self.publisher.wake()

    def _log_overdue(self) -> None:
        try:
            with self.db.transaction() as s:
                late = repo.overdue_tickets(s, time.time(), OPEN_STATES)
                if late:
                    log.warning("overdue tickets", extra={"count": len(late),
                                                          "ids": ",".join(str(t.id) for t in late[:20])})
        except StorageError as exc:
            log.error("cannot list overdue tickets", extra={"error": str(exc)})
