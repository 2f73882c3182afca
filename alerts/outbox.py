"""Never lose an alert: commit first, publish from the outbox, mark sent only after PUBACK.

:class:`OutboxSink` is the pipeline worker's ``EventSink``: ``publish(events)`` commits the
incidents, their events and one outbox row per event in one transaction and returns;
``report_health(reports)`` commits each camera's retained health message the same way. An
:class:`OutboxPublisher` thread sends pending rows oldest first at QoS 1 through a
:class:`alerts.transport.Transport` and marks a row sent only when the broker acknowledged it.
Broker down: rows wait. SIGTERM or a crash between commit and publish: rows are still pending in
the database and go out on the next start (a consumer may see one twice; it dedupes on incident
id + seq).

Sent rows are kept. A consumer that may have missed messages — mosquitto 2.0 drops messages for a
shared subscription whose session was restored from persistence until its client reconnects —
publishes ``{prefix}/replay/request`` ``{"since": t}`` on every connect; with ``answer_replays``
the publisher marks rows sent since ``t`` pending again and sends them once more.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence

from alerts.transport import Endpoint, Message, Transport, TransportFactory
from camera_config.schema import SiteConfig
from core.events import IncidentEvent
from core.topics import DEFAULT_PREFIX, Topics
from pipeline.health import HealthReport
from storage import repository as repo
from storage.db import Database
from storage.errors import StorageError

log = logging.getLogger(__name__)


class OutboxPublisher:
    """Publishes the outbox of ``db`` through ``transport`` in commit order.

    With ``answer_replays`` it also subscribes to ``topics.replay_request`` (see the module text).
    """

    def __init__(self, db: Database, transport: Transport, *, topics: Topics | None = None, batch: int = 200,
                 ack_timeout_s: float = 10.0, idle_poll_s: float = 1.0, answer_replays: bool = False) -> None:
        self.db = db
        self.transport = transport
        self.topics = topics or Topics()
        self.batch = batch
        self.ack_timeout_s = ack_timeout_s
        self.idle_poll_s = idle_poll_s
        self.sent = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if answer_replays:
            transport.subscribe(self.topics.replay_request, self._on_replay)

    def _on_replay(self, msg: Message) -> None:
        """A consumer missed messages (a broker restart can drop them): send again what went since."""
        try:
            since = float(json.loads(msg.payload)["since"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("outbox: ignored a malformed replay request", extra={"error": str(exc)})
            return
        try:
            with self.db.transaction() as s:
                n = repo.requeue_sent_since(s, since)
        except StorageError as exc:
            log.error("outbox: cannot answer a replay request", extra={"error": str(exc)})
            return
        log.info("outbox: replaying %d event(s) sent since %.3f", n, since)
        self.wake()

    def wake(self) -> None:
        """New rows are committed: publish now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-publisher", daemon=True)
        self._thread.start()

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Try to flush for up to ``flush_timeout_s``, then stop. Unsent rows stay pending."""
        deadline = time.monotonic() + flush_timeout_s
        while time.monotonic() < deadline and self.pending() and self.transport.connected:
            self.wake()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ack_timeout_s + 2)

    def pending(self) -> int:
        with self.db.transaction() as s:
            return repo.outbox_counts(s).get("pending", 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.transport.wait_connected(0.5):
                continue
            try:
                progressed = self.publish_once()
            except StorageError as exc:
                log.error("outbox: database error, retrying", extra={"error": str(exc)})
                progressed = False
                self._stop.wait(1.0)
            if not progressed:
                self._wake.wait(self.idle_poll_s)
                self._wake.clear()

    def publish_once(self) -> bool:
        """Send one batch of pending rows; True when at least one was acknowledged."""
        with self.db.transaction() as s:
            rows = [(r.id, r.topic, r.payload, r.retain) for r in repo.pending_outbox(s, self.batch)]
        if not rows:
            return False
        acks = []
        for row_id, topic, payload, retain in rows:
            ack = self.transport.publish(topic, payload, retain=retain)
            if not ack.accepted:  # not connected: stop here, keep order
                break
            acks.append((row_id, ack))
        acked: list[int] = []
        deadline = time.monotonic() + self.ack_timeout_s
        for row_id, ack in acks:
            if not ack.wait(max(0.0, deadline - time.monotonic())):
                break
            acked.append(row_id)
        acked_set = set(acked)
        failed = [row[0] for row in rows if row[0] not in acked_set]
        with self.db.transaction() as s:
            repo.mark_sent(s, acked)
            repo.mark_failed(s, failed[:1], "no PUBACK (broker unreachable or slow)")
        self.sent += len(acked)
        if failed:
            log.info("outbox: %d acknowledged, %d waiting for the broker", len(acked), len(failed))
        return bool(acked)


class OutboxSink:
    """``EventSink`` of the pipeline worker: commit, then let the publisher send."""

    def __init__(self, db: Database, topic_prefix: str = DEFAULT_PREFIX,
                 publisher: OutboxPublisher | None = None) -> None:
        self.db = db
        self.topic_prefix = topic_prefix
        self.topics = Topics(topic_prefix)
        self.publisher = publisher

    def publish(self, events: Sequence[IncidentEvent]) -> None:
        if not events:
            return
        with self.db.transaction() as s:
            repo.record_events(s, events, self.topic_prefix)
        self._wake()

    def report_health(self, reports: Sequence[HealthReport]) -> None:
        """Each camera's state, retained on ``{prefix}/health/{camera}``, committed like an event.

        The worker reports after the incident events of the same check, in a transaction of its
        own: a crash between the two keeps the incident and loses only the retained state, which the
        next change sends again.
        """
        if not reports:
            return
        with self.db.transaction() as s:
            for report in reports:
                repo.enqueue(s, self.topics.health(report.camera_id), report.payload(), retain=True)
        self._wake()

    def _wake(self) -> None:
        if self.publisher is not None:
            self.publisher.wake()

    def flush(self, timeout_s: float = 5.0) -> None:
        """Give the publisher up to ``timeout_s`` to send what is pending; unsent rows stay committed."""
        if self.publisher is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.publisher.transport.connected and self.publisher.pending():
            self.publisher.wake()
            time.sleep(0.05)


class Outbox:
    """The pipeline's whole outbox wired from a site config: database, transport, publisher, sink.

    ``with Outbox.from_site(site, "pipeline-1") as outbox: worker = CameraWorker(..., sink=outbox.sink)``.
    The transport has a persistent session (replay requests wait for us while we are away), a
    retained availability topic ``{prefix}/availability/{pipeline_id}`` and its last will.
    """

    def __init__(self, db: Database, transport: Transport, topic_prefix: str) -> None:
        self.db = db
        self.transport = transport
        self.publisher = OutboxPublisher(db, transport, topics=Topics(topic_prefix), answer_replays=True)
        self.sink = OutboxSink(db, topic_prefix, self.publisher)

    @classmethod
    def from_site(cls, site: SiteConfig, pipeline_id: str, *, db_url: str | None = None,
                  transports: TransportFactory | None = None) -> Outbox:
        """``transports``: the bus (default: MQTT from ``site.mqtt``)."""
        from storage.db import open_database

        if transports is None:
            from alerts.mqtt import mqtt_transports

            transports = mqtt_transports(site.mqtt.for_role("pipeline"))
        topics = Topics(site.mqtt.topic_prefix)
        db = open_database(db_url or site.database.url)
        transport = transports(Endpoint(f"{site.mqtt.client_id}-{pipeline_id}",
                                        availability=topics.availability(pipeline_id), persistent=True))
        return cls(db, transport, site.mqtt.topic_prefix)

    def start(self) -> Outbox:
        self.transport.start()
        self.publisher.start()
        return self

    def close(self, flush_timeout_s: float = 5.0) -> None:
        """Flush what the broker will take in ``flush_timeout_s``; the rest waits in the database."""
        self.publisher.stop(flush_timeout_s)
        self.transport.stop()
        self.db.dispose()

    def __enter__(self) -> Outbox:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
