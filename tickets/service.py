"""``patrol tickets serve``: the consumer in front of :mod:`tickets.desk`.

Subscribes through an :class:`alerts.transport.Transport` (MQTT by default) with a persistent
session to the shared subscriptions ``$share/tickets/{prefix}/incidents/#`` and
``$share/tickets/{prefix}/verify/result/+`` and acknowledges a message (manual ack:
:meth:`alerts.transport.Message.ack`) only after its transaction committed.

Nothing one message holds can stop the others:

- it is validated before the database sees it (:mod:`tickets.validate`: size, UTF-8, NUL, depth,
  finite numbers, integer ranges and string lengths the columns hold, the schema);
- a message that cannot be applied goes to ``dead_letters`` with the reason and is acknowledged;
  so does a verify result this service did not ask for (logged as ignored);
- a database error is retried; when the database still answers other statements, the error
  belongs to the message, which is dead-lettered after :data:`DB_ATTEMPTS` tries (at once for a
  data error); only when the database cannot be reached is the message left unacknowledged and
  the service reconnects after the database is back, so the broker delivers it again;
- an event held for an earlier one asks for a replay, at most ``tickets.gap_requests`` times per
  incident per ``tickets.gap_request_window_s``, and is dead-lettered after ``tickets.held_timeout_s``.

Two or more services may share one database and the subscription: the incident row lock orders
one incident's events, the (incident id, seq) key drops duplicates, a place lock keeps merging right.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DataError

from alerts.outbox import OutboxPublisher
from alerts.transport import Endpoint, Message, Transport, TransportFactory
from camera_config.schema import MqttConfig, TicketsConfig
from core.events import IncidentEvent
from core.schema import schema_errors
from core.topics import TICKETS_GROUP, Topics
from storage import repository as repo
from storage.db import Database
from storage.errors import StorageError
from tickets.desk import VerifyIgnored, apply_event, apply_verify_result, expire_held, retry_stale_verifications
from tickets.states import OPEN_STATES
from tickets.validate import Rejected, check_event_fits, check_verify_result, parse_json

log = logging.getLogger(__name__)

__all__ = ["Rejected", "TicketService", "decode_event", "decode_verify_result"]

REPLAY_MARGIN_S = 60.0
"""Replays start this long before the last received message (clock skew, in-flight messages)."""
DB_ATTEMPTS = 3
"""Tries of one message while the database answers other statements (a deadlock or lock timeout
between two services passes on the second); then the error is the message's own: dead-lettered."""
RETRY_PAUSE_S = 0.2
"""Pause before the second try, doubled before the third."""
MAX_REASON_CHARS = 2_000
"""A dead letter's reason is cut here (pydantic's error text can quote a whole field)."""


def decode_event(topics: Topics, topic: str, payload: bytes, max_bytes: int) -> IncidentEvent:
    """A received incident event, checked to fit the tables; :class:`Rejected` with the reason."""
    if len(payload) > max_bytes:
        raise Rejected(f"oversized: {len(payload)} bytes > limit {max_bytes}")
    where = topics.parse_incident(topic)
    if where is None:
        raise Rejected(f"not an incident topic: {topic!r} (expected {topics.prefix}/incidents/TYPE/CAMERA)")
    raw = parse_json(payload, max_bytes=max_bytes)
    problems = schema_errors(raw)
    if problems:
        raise Rejected("schema: " + "; ".join(problems[:5]))
    try:
        ev = IncidentEvent.model_validate(raw)
    except ValidationError as exc:
        raise Rejected(f"invalid event: {exc.errors(include_url=False, include_input=False)[:3]}") from exc
    check_event_fits(ev)
    if (ev.type, ev.camera_id) != where:
        raise Rejected(f"topic {topic!r} does not match payload type={ev.type!r} camera={ev.camera_id!r}")
    return ev


def decode_verify_result(topics: Topics, topic: str, payload: bytes, max_bytes: int) -> tuple[dict[str, Any], str]:
    """(result, camera of the topic) of a verify result; :class:`Rejected` with the reason."""
    camera = topic.rsplit("/", 1)[-1]
    if not topics.is_verify_result(topic) or not camera:
        raise Rejected(f"not a verify result topic: {topic!r}")
    return check_verify_result(parse_json(payload, max_bytes=max_bytes)), camera


def _readable(reason: str) -> str:
    """A reason any database can store and a person can read: no NUL, bounded."""
    reason = reason.replace("\x00", "\\u0000")
    return reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "..."


def _data_error(exc: StorageError) -> bool:
    """The database refused the values themselves (out of range, bad encoding): no retry helps."""
    return isinstance(exc.__cause__, DataError)


class _GapRequests:
    """At most ``limit`` replay requests per incident per ``window_s`` (memory: held incidents only)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._sent: dict[str, deque[float]] = {}

    def take(self, incident_ids: Sequence[str], now: float) -> list[str]:
        """The incidents that may still ask; each of them is charged one request."""
        self._sent = {i: self._sent[i] for i in incident_ids if i in self._sent}
        allowed = []
        for incident_id in incident_ids:
            sent = self._sent.setdefault(incident_id, deque())
            while sent and sent[0] <= now - self.window_s:
                sent.popleft()
            if len(sent) < self.limit:
                sent.append(now)
                allowed.append(incident_id)
        return allowed


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
        self.gaps = _GapRequests(tickets_cfg.gap_requests, tickets_cfg.gap_request_window_s)
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

    def _ask_replay(self, since: float | None = None, incidents: Sequence[str] = ()) -> None:
        """Ask every pipeline to send again what it sent since shortly before our last message.

        A broker restart can drop messages for a shared subscription until we reconnect; the
        replayed duplicates are dropped by the (incident id, seq) dedupe. ``incidents``: the ones
        whose gap caused the request (for the pipelines' logs; they re-send everything since).
        """
        if since is None:
            try:
                with self.db.transaction() as s:
                    last = repo.last_received_at(s)
            except StorageError as exc:
                log.error("cannot read the last receive time; asking for a full replay", extra={"error": str(exc)})
                last = None
            since = 0.0 if last is None else last - REPLAY_MARGIN_S
        request: dict[str, Any] = {"since": since, "by": self.client_id}
        if incidents:
            request["incidents"] = list(incidents[:50])
        self.transport.publish(self.topics.replay_request, json.dumps(request))

    def _repair_gaps(self) -> None:
        """Held events: dead-letter those past ``held_timeout_s``; for the others ask for a replay,
        within each incident's budget of ``gap_requests`` per ``gap_request_window_s``."""
        now = time.time()
        try:
            for reason in expire_held(self.db, now, self.cfg.held_timeout_s):
                log.warning("dead-lettered a held event: %s", reason)
            with self.db.transaction() as s:
                held = repo.held_incidents(s, now - self.cfg.gap_patience_s)
        except StorageError as exc:
            log.error("cannot look at held events", extra={"error": str(exc)})
            return
        if not held or not self.transport.connected:
            return
        allowed = set(self.gaps.take([incident_id for incident_id, _at in held], now))
        if not allowed:
            log.debug("%d incident(s) wait for earlier events; their replay requests are spent", len(held))
            return
        asking = [(incident_id, at) for incident_id, at in held if incident_id in allowed]
        log.warning("%d incident(s) wait for a missing earlier event; asking for a replay", len(asking),
                    extra={"incidents": ",".join(i for i, _at in asking[:20])})
        self._ask_replay(since=min(at for _i, at in asking) - REPLAY_MARGIN_S, incidents=[i for i, _at in asking])

    # ---- one message
    def handle(self, topic: str, payload: bytes) -> str:
        """Process one message; returns the outcome. Raises StorageError when the database fails."""
        try:
            if self.topics.is_verify_result(topic):
                return "verify:" + self._verify_result(topic, payload)
            ev = decode_event(self.topics, topic, payload, self.mqtt_cfg.max_payload_bytes)
            return apply_event(self.db, self.cfg, ev, topic)
        except Rejected as exc:
            self.dead_letter(topic, payload, str(exc))
            return "dead_letter"

    def _verify_result(self, topic: str, payload: bytes) -> str:
        result, camera = decode_verify_result(self.topics, topic, payload, self.mqtt_cfg.max_payload_bytes)
        try:
            return apply_verify_result(self.db, result, camera_id=camera, archive=self.cfg.archive_verified)
        except VerifyIgnored as exc:
            log.warning("ignored a verify result this service did not ask for (forged, stale or repeated): %s",
                        exc, extra={"topic": topic})
            self.dead_letter(topic, payload, f"verify result ignored: {exc}", quiet=True)
            return "ignored"

    def dead_letter(self, topic: str, payload: bytes, reason: str, *, quiet: bool = False) -> None:
        """Keep a message that cannot be applied, with the reason (raises StorageError when it cannot)."""
        reason = _readable(reason)
        with self.db.transaction() as s:
            repo.add_dead_letter(s, topic, payload, reason)
        if not quiet:
            log.warning("dead-lettered a message: %s", reason[:300], extra={"topic": topic})

    def _db_reachable(self) -> bool:
        try:
            with self.db.transaction() as s:
                s.execute(text("SELECT 1"))
        except StorageError:
            return False
        return True

    def _settle(self, msg: Message) -> str | None:
        """The outcome of one message, or None when it must stay unacknowledged (database away)."""
        failure = ""
        for attempt in range(DB_ATTEMPTS):
            try:
                return self.handle(msg.topic, msg.payload)
            except StorageError as exc:
                if not self._db_reachable():
                    log.error("database unreachable; message left unacknowledged", extra={"error": str(exc)})
                    return None
                failure = f"database refused it while answering other statements: {exc}"
                if _data_error(exc):
                    break
                if attempt + 1 < DB_ATTEMPTS:
                    time.sleep(RETRY_PAUSE_S * 2**attempt)
            except Exception as exc:  # a bug on one message must neither kill the loop nor block the rest
                log.exception("unexpected error on a message; dead-lettering it", extra={"topic": msg.topic})
                failure = f"internal error: {type(exc).__name__}: {exc}"
                break
        try:
            self.dead_letter(msg.topic, msg.payload, failure)
        except StorageError as exc:
            log.error("cannot dead-letter a message; left unacknowledged", extra={"error": str(exc)})
            return None
        return "dead_letter"

    def _on_message(self, msg: Message) -> None:
        if self._db_down.is_set():
            return  # not acknowledged: redelivered after the reconnect
        outcome = self._settle(msg)
        if outcome is None:
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
        repair_every = min(self.cfg.gap_patience_s, self.cfg.held_timeout_s / 2)
        next_repair = time.monotonic() + repair_every
        while not stop.wait(0.5):
            if self._db_down.is_set():
                self._recover()
            if time.monotonic() >= next_repair:
                next_repair = time.monotonic() + repair_every
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
