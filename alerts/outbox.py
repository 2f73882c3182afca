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
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.transport import Endpoint, Message, Transport, TransportFactory
from camera_config.schema import SiteConfig
from core.events import IncidentEvent
from core.redact import redact_text
from core.topics import DEFAULT_PREFIX, Topics
from pipeline.health import HealthReport
from pipeline.worker import EventsAtRisk
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


Item = dict[str, Any]
"""One call into the sink, kept until committed: ``{"kind": "events", "events": [json, ...]}`` (in
memory also ``"objects"``, the events themselves, so each is encoded once) or ``{"kind": "health",
"messages": [[topic, payload], ...]}``; one line of the spill file."""

MEMORY_EVENTS = 10_000
"""Events held in memory while the database refuses writes, before the spill file takes the rest:
about 1.5 KB an event, 15 MB; at the demo's rate (a few events a minute a camera) hours of outage."""

RETRY_S = (0.5, 10.0)
"""First and longest wait between two attempts to commit what is held (doubling in between)."""

LOUD_EVERY_S = 30.0
"""While the database refuses writes, the ERROR line is repeated this often (with the count held)."""


def _item_events(item: Item) -> int:
    return len(item.get("events", ())) if item.get("kind") == "events" else 0


class SpillFile:
    """The durable tail of a :class:`Backlog`: append-only JSON lines, each fsynced before
    ``append`` returns; consumed from the front, truncated once everything in it is committed.

    A line is an :data:`Item`. A crash between a commit and the truncation re-commits the committed
    lines on the next start, which the repository absorbs (incident id + seq are unique). A torn
    last line (a crash inside ``write``) is reported and skipped: it was never acknowledged as kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._head: tuple[Item, int] | None = None
        self.items = 0
        self.events = 0
        if path.exists():
            for item, _size in self._lines(0):
                self.items += 1
                self.events += _item_events(item)
            if self.items:
                log.warning("outbox: %d event(s) left in the spill file %s by an earlier run; "
                            "committed first", self.events, path)

    def _lines(self, offset: int) -> Iterator[tuple[Item, int]]:
        with self.path.open("rb") as f:
            f.seek(offset)
            for raw in f:
                if not raw.endswith(b"\n"):
                    log.error("outbox: spill file %s ends in a torn line (%d bytes, a crash while writing); "
                              "skipped", self.path, len(raw))
                    yield {"kind": "torn"}, len(raw)
                    return
                yield json.loads(raw), len(raw)

    def __len__(self) -> int:
        return self.items

    def append(self, items: Sequence[Item]) -> None:
        """Write ``items`` at the end and fsync; raises OSError when the disk refuses."""
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            for item in items:
                f.write(_line(item))
            f.flush()
            os.fsync(f.fileno())
        if new:
            _fsync_dir(self.path.parent)
        self.items += len(items)
        self.events += sum(_item_events(i) for i in items)

    def peek(self) -> Item | None:
        while self.items and self._head is None:
            head = next(self._lines(self._offset), None)
            if head is None:  # the file went away under us: nothing more to read
                self.items = self.events = 0
                return None
            if head[0].get("kind") == "torn":
                self._advance(head[1], 0)
                continue
            self._head = head
        return self._head[0] if self._head else None

    def pop(self) -> None:
        if self._head is not None:
            item, size = self._head
            self._head = None
            self._advance(size, _item_events(item))

    def _advance(self, size: int, events: int) -> None:
        self._offset += size
        self.items = max(0, self.items - 1)
        self.events = max(0, self.events - events)
        if self.items == 0:
            self.path.unlink(missing_ok=True)
            self._offset = 0

    def rewrite(self, front: Sequence[Item]) -> None:
        """Put ``front`` before what is left, atomically (write, fsync, rename); raises OSError."""
        rest = []
        if self.items:
            rest = [item for item, _ in self._lines(self._offset) if item.get("kind") != "torn"]
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            for item in [*front, *rest]:
                f.write(_line(item))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._offset, self._head = 0, None
        self.items = len(front) + len(rest)
        self.events = sum(_item_events(i) for i in [*front, *rest])


def _line(item: Item) -> bytes:
    """One spill line: the item without its in-memory event objects (``objects``)."""
    return json.dumps({k: v for k, v in item.items() if k != "objects"}, separators=(",", ":")).encode() + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Backlog:
    """What the database has not taken yet, oldest first: up to ``memory_events`` in memory, the
    rest in a :class:`SpillFile` (once anything is spilled, newer items follow it there: order)."""

    def __init__(self, memory_events: int = MEMORY_EVENTS, spill_path: Path | None = None) -> None:
        self.memory_events = memory_events
        self.memory: deque[Item] = deque()
        self.memory_count = 0
        self.spill = SpillFile(spill_path) if spill_path is not None else None
        self.spilled_total = 0

    @property
    def events(self) -> int:
        return self.memory_count + (self.spill.events if self.spill else 0)

    def __len__(self) -> int:
        return len(self.memory) + (len(self.spill) if self.spill else 0)

    def append(self, item: Item) -> None:
        """Keep ``item``; raises :class:`EventsAtRisk` when memory is full and it cannot be spilled
        (the item is then kept in memory all the same, over the bound: never dropped here)."""
        n = _item_events(item)
        if (self.spill is not None and len(self.spill)) or self.memory_count + n > self.memory_events:
            if self.spill is None:
                self._keep_in_memory(item)
                raise EventsAtRisk(f"outbox: {self.events} event(s) held in memory (limit {self.memory_events}) "
                                   "and no spill directory is configured: stopping before any is lost")
            try:
                self.spill.append([item])
            except OSError as exc:
                self._keep_in_memory(item)
                raise EventsAtRisk(f"outbox: {self.events} event(s) held and the spill file {self.spill.path} "
                                   f"cannot be written ({exc.strerror or exc}): stopping before any is lost"
                                   ) from exc
            self.spilled_total += n
            return
        self._keep_in_memory(item)

    def _keep_in_memory(self, item: Item) -> None:
        self.memory.append(item)
        self.memory_count += _item_events(item)

    def peek(self) -> Item | None:
        if self.memory:
            return self.memory[0]
        return self.spill.peek() if self.spill is not None else None

    def pop(self) -> None:
        if self.memory:
            self.memory_count -= _item_events(self.memory.popleft())
        elif self.spill is not None:
            self.spill.pop()

    def persist(self) -> int:
        """Move what is in memory to the front of the spill file; returns the events still only in
        memory afterwards (0 unless there is no spill file or it cannot be written)."""
        if not self.memory:
            return 0
        if self.spill is None:
            return self.memory_count
        try:
            self.spill.rewrite(list(self.memory))
        except OSError as exc:
            log.critical("outbox: cannot write the spill file %s: %s", self.spill.path, exc.strerror or exc)
            return self.memory_count
        self.spilled_total += self.memory_count
        self.memory.clear()
        self.memory_count = 0
        return 0


_SINKS: weakref.WeakSet[OutboxSink] = weakref.WeakSet()


def readiness() -> tuple[bool, list[str]]:
    """Whether every outbox sink of this process commits what it is given (for a /readyz):
    ``(True, [])``, or ``(False, reasons)`` while a database refuses writes or events are at risk."""
    reasons = [reason for sink in list(_SINKS) if (reason := sink.not_ready()) is not None]
    return not reasons, reasons


class OutboxSink:
    """``EventSink`` of the pipeline worker: commit, then let the publisher send.

    A commit that fails keeps the events (and health reports) in a :class:`Backlog`, in order, and a
    retry thread commits them, oldest first, when the database takes writes again; newer events
    queue behind them. Meanwhile the failure is loud: an ERROR line naming the database and the
    error (repeated every :data:`LOUD_EVERY_S`), :meth:`not_ready` / :func:`readiness`, the metrics
    of :meth:`collector` and ``on_state`` (the :class:`Outbox` publishes a retained health message
    with it). Events that can be neither committed nor spilled raise :class:`EventsAtRisk` (the
    worker stops on it); :meth:`close` spills what memory still holds.
    """

    def __init__(self, db: Database, topic_prefix: str = DEFAULT_PREFIX,
                 publisher: OutboxPublisher | None = None, *, spill_path: Path | None = None,
                 memory_events: int = MEMORY_EVENTS, retry_s: tuple[float, float] = RETRY_S,
                 on_state: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.db = db
        self.topic_prefix = topic_prefix
        self.topics = Topics(topic_prefix)
        self.publisher = publisher
        self.backlog = Backlog(memory_events, spill_path)
        self.retry_s = retry_s
        self.on_state = on_state
        self.committed_events = 0
        self.commit_failures = 0
        self.lost_events = 0
        self.at_risk: str | None = None
        self.last_error: str | None = None
        self._failing_since: float | None = None
        self._last_loud = 0.0
        self._lock = threading.Lock()  # the backlog (short holds only)
        self._writer = threading.Lock()  # one commit at a time, in order
        self._wake_retry = threading.Event()
        self._stop_retry = threading.Event()
        self._retry_thread: threading.Thread | None = None
        _SINKS.add(self)
        if len(self.backlog):
            self._start_retry()

    # -- EventSink --------------------------------------------------------------------------------

    def publish(self, events: Sequence[IncidentEvent]) -> None:
        if events:
            self._submit({"kind": "events", "events": [ev.to_json() for ev in events], "objects": list(events)})

    def report_health(self, reports: Sequence[HealthReport]) -> None:
        """Each camera's state, retained on ``{prefix}/health/{camera}``, committed like an event.

        The worker reports after the incident events of the same check, in a transaction of its
        own: a crash between the two keeps the incident and loses only the retained state, which the
        next change sends again.
        """
        if reports:
            self._submit({"kind": "health",
                          "messages": [[self.topics.health(r.camera_id), r.payload()] for r in reports]})

    def flush(self, timeout_s: float = 5.0) -> None:
        """Give the publisher up to ``timeout_s`` to send what is pending; unsent rows stay committed."""
        if self.publisher is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.publisher.transport.connected and self.publisher.pending():
            self.publisher.wake()
            time.sleep(0.05)

    # -- durability -------------------------------------------------------------------------------

    @property
    def held_events(self) -> int:
        """Events given to the sink and not committed yet (memory and spill file)."""
        with self._lock:
            return self.backlog.events

    def not_ready(self) -> str | None:
        """Why this sink is not ready (events held or at risk), or None when it commits as it goes."""
        if self.at_risk:
            return self.at_risk
        held = self.held_events
        if held or self._failing_since is not None:
            return (f"outbox: database {redact_text(self.db.url)} refuses writes; {held} event(s) held: "
                    f"{self.last_error or 'retrying'}")
        return None

    def _submit(self, item: Item) -> None:
        with self._lock:
            if len(self.backlog):
                self._hold(item)
                return
        with self._writer:
            with self._lock:
                if len(self.backlog):  # another writer failed while we waited: queue behind it
                    self._hold(item)
                    return
            try:
                self._commit(item)
            except StorageError as exc:
                with self._lock:
                    self._failed(exc, also=_item_events(item))
                    self._hold(item)
                return
        self._wake()

    def _hold(self, item: Item) -> None:
        """Under ``_lock``: keep ``item`` in the backlog and make sure the retry thread runs."""
        self._start_retry()
        self._wake_retry.set()
        try:
            self.backlog.append(item)
        except EventsAtRisk as exc:
            if self.at_risk is None:
                log.critical("%s", exc)
                self._state("failed")
            self.at_risk = str(exc)
            raise

    def _commit(self, item: Item) -> None:
        with self.db.transaction() as s:
            if item["kind"] == "events":
                events = item.get("objects") or [IncidentEvent.model_validate_json(e) for e in item["events"]]
                repo.record_events(s, events, self.topic_prefix)
            elif item["kind"] == "health":
                for topic, payload in item["messages"]:
                    repo.enqueue(s, topic, payload, retain=True)
        self.committed_events += _item_events(item)

    def _failed(self, exc: StorageError, also: int = 0) -> None:
        """Under ``_lock``: a commit failed (``also``: events about to be held besides the backlog)."""
        self.commit_failures += 1
        self.last_error = str(exc)
        now = time.monotonic()
        first = self._failing_since is None
        if first:
            self._failing_since = now
        if first or now - self._last_loud >= LOUD_EVERY_S:
            self._last_loud = now
            held = self.backlog.events + also
            log.error("outbox: cannot commit to the database (%s); %d event(s) held in order, committed when "
                      "it takes writes again", exc, held,
                      extra={"database": redact_text(self.db.url), "held_events": held})
        if first:
            self._state("degraded")

    def _state(self, state: str) -> None:
        if self.on_state is None:
            return
        try:
            self.on_state({"component": "database", "state": state, "at": time.time(),
                           "database": redact_text(self.db.url), "held_events": self.backlog.events,
                           "error": None if state == "ok" else (self.at_risk or self.last_error)})
        except Exception:
            log.exception("outbox: could not report the database state %s", state)

    def _start_retry(self) -> None:
        if self._retry_thread is None and not self._stop_retry.is_set():
            self._retry_thread = threading.Thread(target=self._retry_loop, name="outbox-retry", daemon=True)
            self._retry_thread.start()

    def _retry_loop(self) -> None:
        wait = self.retry_s[0]
        while not self._stop_retry.is_set():
            if self.drain():
                wait = self.retry_s[0]
                self._wake_retry.wait(self.retry_s[1])
                self._wake_retry.clear()
            else:
                self._stop_retry.wait(wait)
                wait = min(wait * 2, self.retry_s[1])

    def drain(self) -> bool:
        """Commit what is held, oldest first; True when nothing is held any more."""
        committed = 0
        while True:
            with self._writer:
                with self._lock:
                    item = self.backlog.peek()
                if item is None:
                    break
                try:
                    self._commit(item)
                except StorageError as exc:
                    with self._lock:
                        self._failed(exc)
                    return False
                with self._lock:
                    self.backlog.pop()
                committed += _item_events(item)
        if committed or self._failing_since is not None:
            since = self._failing_since
            self._failing_since = None
            log.warning("outbox: the database takes writes again; committed %d held event(s)%s", committed,
                        f" after {time.monotonic() - since:.1f} s" if since is not None else "")
            self._state("ok")
            self._wake()
        return True

    def close(self) -> None:
        """Stop retrying after one last attempt; what is still held goes to the spill file. Events
        neither committed nor spilled are counted in :attr:`lost_events` (and logged, CRITICAL)."""
        self._stop_retry.set()
        self._wake_retry.set()
        if self._retry_thread is not None:
            self._retry_thread.join(timeout=60)
        _SINKS.discard(self)
        if not len(self.backlog) or self.drain():
            return
        with self._lock:
            self.lost_events = self.backlog.persist()
            spill = self.backlog.spill
            if self.lost_events:
                log.critical("outbox: %d event(s) could be neither committed to %s nor spilled; they are "
                             "only in this run's stdout", self.lost_events, redact_text(self.db.url))
            elif spill is not None and spill.events:
                log.error("outbox: %d event(s) not committed at stop are in the spill file %s; the next "
                          "start commits them first", spill.events, spill.path)

    def collector(self) -> Collector:
        """Prometheus metrics of this sink (held events, failures, readiness)."""
        return _SinkCollector(self)

    def _wake(self) -> None:
        if self.publisher is not None:
            self.publisher.wake()


class _SinkCollector(Collector):
    def __init__(self, sink: OutboxSink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        sink = self.sink
        yield GaugeMetricFamily("patrol_outbox_held_events",
                                "Events not committed yet (database refusing writes), memory and spill.",
                                value=sink.held_events)
        yield GaugeMetricFamily("patrol_outbox_spilled_events", "Held events in the spill file.",
                                value=sink.backlog.spill.events if sink.backlog.spill else 0)
        yield CounterMetricFamily("patrol_outbox_commit_failures", "Commits the database refused.",
                                  value=sink.commit_failures)
        yield CounterMetricFamily("patrol_outbox_committed_events", "Events committed by this sink.",
                                  value=sink.committed_events)
        yield GaugeMetricFamily("patrol_outbox_ready", "1 when the outbox commits events as they come.",
                                value=0 if sink.not_ready() else 1)


class Outbox:
    """The pipeline's whole outbox wired from a site config: database, transport, publisher, sink.

    ``with Outbox.from_site(site, "pipeline-1") as outbox: worker = CameraWorker(..., sink=outbox.sink)``.
    The transport has a persistent session (replay requests wait for us while we are away), a
    retained availability topic ``{prefix}/availability/{pipeline_id}`` and its last will.
    With ``spill_dir`` the sink spills what the database will not take to
    ``{spill_dir}/outbox-{pipeline_id}.jsonl`` once memory is full; while the database refuses writes
    the pipeline's state goes straight to the broker (not through the database), retained, on
    ``{prefix}/health/pipeline/{pipeline_id}`` (:meth:`health_topic`).
    """

    def __init__(self, db: Database, transport: Transport, topic_prefix: str, *, pipeline_id: str = "pipeline",
                 spill_dir: Path | None = None, memory_events: int = MEMORY_EVENTS) -> None:
        self.db = db
        self.transport = transport
        self.pipeline_id = pipeline_id
        self.publisher = OutboxPublisher(db, transport, topics=Topics(topic_prefix), answer_replays=True)
        self.health_topic = f"{Topics(topic_prefix).health('pipeline')}/{pipeline_id}"
        spill = Path(spill_dir) / f"outbox-{pipeline_id}.jsonl" if spill_dir is not None else None
        self.sink = OutboxSink(db, topic_prefix, self.publisher, spill_path=spill, memory_events=memory_events,
                               on_state=self._report_state)

    def _report_state(self, state: dict[str, Any]) -> None:
        """The database state, retained, straight through the transport (the database is the problem)."""
        payload = json.dumps({"pipeline_id": self.pipeline_id, **state}, sort_keys=True)
        self.transport.publish(self.health_topic, payload, retain=True)

    @classmethod
    def from_site(cls, site: SiteConfig, pipeline_id: str, *, db_url: str | None = None,
                  transports: TransportFactory | None = None, spill_dir: Path | None = None,
                  memory_events: int = MEMORY_EVENTS) -> Outbox:
        """``transports``: the bus (default: MQTT from ``site.mqtt``)."""
        from storage.db import open_database

        if transports is None:
            from alerts.mqtt import mqtt_transports

            transports = mqtt_transports(site.mqtt.for_role("pipeline"))
        topics = Topics(site.mqtt.topic_prefix)
        db = open_database(db_url or site.database.url)
        transport = transports(Endpoint(f"{site.mqtt.client_id}-{pipeline_id}",
                                        availability=topics.availability(pipeline_id), persistent=True))
        return cls(db, transport, site.mqtt.topic_prefix, pipeline_id=pipeline_id, spill_dir=spill_dir,
                   memory_events=memory_events)

    def start(self) -> Outbox:
        self.transport.start()
        self.publisher.start()
        return self

    def close(self, flush_timeout_s: float = 5.0) -> None:
        """Commit or spill what the sink holds, flush what the broker will take in ``flush_timeout_s``;
        the rest waits in the database (or the spill file)."""
        self.sink.close()
        self.publisher.stop(flush_timeout_s)
        self.transport.stop()
        self.db.dispose()

    def __enter__(self) -> Outbox:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
