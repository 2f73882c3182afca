"""An in-process broker and its :class:`alerts.transport.Transport`: the bus without MQTT.

:class:`InMemoryBroker` keeps what an MQTT v5 broker with persistence keeps, for any number of
:class:`InMemoryTransport` clients in one process:

* retained messages (an empty retained payload clears the topic), sent to every new non-shared
  subscription with ``retained=True``;
* sessions by client id: a persistent one keeps its subscriptions, queues QoS 1 messages while
  its client is away and delivers again (``duplicate=True``) what was delivered but not
  acknowledged; a clean one is dropped when its client goes;
* shared subscriptions (``$share/{group}/{filter}``): each message to one connected member of the
  group, round robin; with no member connected, to a persistent member's queue;
* the last will: an unclean end (:meth:`InMemoryTransport.kill`) publishes the availability
  topic's retained "offline"; a clean stop does not (it publishes "offline" itself);
* :meth:`InMemoryBroker.stop` / :meth:`InMemoryBroker.start`: a broker restart — every client loses
  its connection (no wills: the broker is what went away) and reconnects, subscribing again.

Handlers run on each transport's own delivery thread, as paho runs them on its network thread;
a publish is acknowledged once the broker holds the message, i.e. at once while connected.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from alerts.transport import OFFLINE, ONLINE, Ack, Endpoint, Handler, Message, Settled, as_bytes
from core.topics import Topics, matches, split_shared

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    topic: str
    payload: bytes
    retained: bool = False
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class _Connected:
    generation: int


@dataclass(frozen=True, slots=True)
class _Delivery:
    generation: int
    pending: _Pending
    token: int


@dataclass(slots=True)
class _Session:
    client_id: str
    persistent: bool
    subscriptions: list[str] = field(default_factory=list)
    online: InMemoryTransport | None = None
    queued: deque[_Pending] = field(default_factory=deque)
    inflight: dict[int, _Pending] = field(default_factory=dict)


class InMemoryBroker:
    """The shared broker; ``broker.transport`` is a :data:`alerts.transport.TransportFactory`."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._retained: dict[str, bytes] = {}
        self._sessions: dict[str, _Session] = {}
        self._started: list[InMemoryTransport] = []
        self._turn: dict[str, int] = {}
        self._tokens = itertools.count(1)
        self.running = True

    def transport(self, endpoint: Endpoint) -> InMemoryTransport:
        return InMemoryTransport(self, endpoint)

    def retained(self) -> dict[str, bytes]:
        """Every retained topic and its payload."""
        with self._lock:
            return dict(self._retained)

    def stop(self) -> None:
        """The broker goes away: every client is disconnected; persistent sessions and retained
        messages survive (as with mosquitto's persistence), clean sessions do not."""
        with self._lock:
            self.running = False
            for session in list(self._sessions.values()):
                if session.online is not None:
                    self._drop(session)

    def start(self) -> None:
        """The broker is back: every started client reconnects."""
        with self._lock:
            self.running = True
            for transport in list(self._started):
                self._connect(transport)

    # -- called by InMemoryTransport, under the broker's lock ------------------------------------

    def _register(self, transport: InMemoryTransport) -> None:
        with self._lock:
            if transport not in self._started:
                self._started.append(transport)
            if self.running:
                self._connect(transport)

    def _unregister(self, transport: InMemoryTransport, *, will: bool) -> None:
        with self._lock:
            if transport in self._started:
                self._started.remove(transport)
            session = self._sessions.get(transport.endpoint.client_id)
            if session is None or session.online is not transport:
                return
            self._drop(session)
            if will and transport.endpoint.availability:
                self._route(transport.endpoint.availability, OFFLINE, retain=True)

    def _connect(self, transport: InMemoryTransport) -> None:
        endpoint = transport.endpoint
        session = self._sessions.get(endpoint.client_id)
        if session is not None and session.online is not None:  # the same client id again: take over
            old = session.online
            self._drop(session)
            if old.endpoint.availability:
                self._route(old.endpoint.availability, OFFLINE, retain=True)
        if session is None or not endpoint.persistent or not session.persistent:
            session = _Session(endpoint.client_id, endpoint.persistent)
            self._sessions[endpoint.client_id] = session
        session.online = transport
        generation = transport._connected_now()
        again = [_Pending(p.topic, p.payload, p.retained, duplicate=True) for p in session.inflight.values()]
        session.inflight.clear()
        backlog = again + list(session.queued)
        session.queued.clear()
        for pending in backlog:
            self._deliver(session, pending)
        for subscription in transport._subscriptions():
            self._subscribe(session, subscription)
        transport._hand(_Connected(generation))

    def _drop(self, session: _Session) -> None:
        """``session``'s client is gone: unacknowledged messages wait for its return, or are lost."""
        transport, session.online = session.online, None
        if transport is not None:
            transport._lost()
        if session.persistent:
            session.queued.extendleft(reversed([_Pending(p.topic, p.payload, p.retained, True)
                                                for p in session.inflight.values()]))
            session.inflight.clear()
        else:
            del self._sessions[session.client_id]

    def _subscribe(self, session: _Session, subscription: str) -> None:
        if subscription not in session.subscriptions:
            session.subscriptions.append(subscription)
        group, topic_filter = split_shared(subscription)
        if group is not None:
            return  # MQTT v5 4.8.2: retained messages are not sent to a shared subscription
        for topic, payload in sorted(self._retained.items()):
            if matches(topic_filter, topic):
                self._deliver(session, _Pending(topic, payload, retained=True))

    def _publish(self, transport: InMemoryTransport, topic: str, payload: bytes, retain: bool) -> bool:
        with self._lock:
            session = self._sessions.get(transport.endpoint.client_id)
            if not self.running or session is None or session.online is not transport:
                return False
            self._route(topic, payload, retain=retain)
            return True

    def _route(self, topic: str, payload: bytes, *, retain: bool) -> None:
        if any(c in topic for c in "+#") or not topic:
            raise ValueError(f"publish: {topic!r} is not a topic name (no wildcards, not empty)")
        if retain:
            if payload:
                self._retained[topic] = payload
            else:
                self._retained.pop(topic, None)
        targets: dict[str, _Session] = {}
        groups: dict[str, list[_Session]] = {}
        for session in self._sessions.values():
            for subscription in session.subscriptions:
                group, topic_filter = split_shared(subscription)
                if not matches(topic_filter, topic):
                    continue
                if group is None:
                    targets[session.client_id] = session
                else:
                    groups.setdefault(subscription, []).append(session)
        for subscription, members in groups.items():
            chosen = self._take_turn(subscription, members)
            if chosen is not None:
                targets.setdefault(chosen.client_id, chosen)
        for session in targets.values():
            self._deliver(session, _Pending(topic, payload))

    def _take_turn(self, subscription: str, members: list[_Session]) -> _Session | None:
        """The next connected member of a shared group, else the next persistent one (queued)."""
        pool = [m for m in members if m.online is not None] or [m for m in members if m.persistent]
        if not pool:
            return None
        turn = self._turn.get(subscription, 0)
        self._turn[subscription] = turn + 1
        return pool[turn % len(pool)]

    def _deliver(self, session: _Session, pending: _Pending) -> None:
        transport = session.online
        if transport is None:
            if session.persistent:
                session.queued.append(pending)
            return
        token = next(self._tokens)
        session.inflight[token] = pending
        transport._hand(_Delivery(transport._generation, pending, token))

    def _ack(self, client_id: str, token: int) -> None:
        with self._lock:
            session = self._sessions.get(client_id)
            if session is not None:
                session.inflight.pop(token, None)


class InMemoryTransport:
    """A client of an :class:`InMemoryBroker`, implementing :class:`alerts.transport.Transport`."""

    def __init__(self, broker: InMemoryBroker, endpoint: Endpoint) -> None:
        self.broker = broker
        self._endpoint = endpoint
        self._connected = threading.Event()
        self._generation = 0
        self._subs: list[tuple[str, str, Handler]] = []  # (subscription, filter, handler)
        self._callbacks: list[Callable[[], None]] = []
        self._inbox: queue.Queue[_Connected | _Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def client_id(self) -> str:
        return self._endpoint.client_id

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"memory-{self.client_id}", daemon=True)
            self._thread.start()
        self.broker._register(self)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, *, offline: bool = True) -> None:
        if offline and self._endpoint.availability and self.connected:
            self.publish(self._endpoint.availability, OFFLINE, retain=True)
        self.broker._unregister(self, will=False)
        self._end_thread()

    def kill(self) -> None:
        """End as a crash would: the broker publishes the last will."""
        self.broker._unregister(self, will=True)
        self._end_thread()

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> Ack:
        try:
            return Settled(self.broker._publish(self, topic, as_bytes(payload), retain))
        except ValueError as exc:  # as paho refuses a wildcard topic
            log.error("publish refused", extra={"client_id": self.client_id, "topic": topic, "error": str(exc)})
            return Settled(False)

    def subscribe(self, topic_filter: str, handler: Handler, *, shared_group: str | None = None) -> None:
        subscription = Topics.shared(topic_filter, shared_group) if shared_group else topic_filter
        with self.broker._lock:
            self._subs.append((subscription, split_shared(subscription)[1], handler))
            session = self.broker._sessions.get(self.client_id)
            if session is not None and session.online is self:
                self.broker._subscribe(session, subscription)

    def on_connected(self, callback: Callable[[], None]) -> None:
        with self.broker._lock:
            self._callbacks.append(callback)

    # -- the broker's side (under its lock) ------------------------------------------------------

    def _subscriptions(self) -> list[str]:
        return list(dict.fromkeys(s for s, _f, _h in self._subs))

    def _connected_now(self) -> int:
        self._generation += 1
        self._connected.set()
        return self._generation

    def _lost(self) -> None:
        self._generation += 1  # what was handed to the old connection is not handled any more
        self._connected.clear()

    def _hand(self, item: _Connected | _Delivery) -> None:
        self._inbox.put(item)

    # -- the delivery thread ---------------------------------------------------------------------

    def _end_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._inbox.put(None)
            if thread is not threading.current_thread():
                thread.join(5.0)

    def _run(self) -> None:
        while (item := self._inbox.get()) is not None:
            if isinstance(item, _Connected):
                self._on_connect(item.generation)
            else:
                self._dispatch(item.generation, item.pending, item.token)

    def _on_connect(self, generation: int) -> None:
        with self.broker._lock:
            if generation != self._generation:
                return
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("on-connect callback failed", extra={"client_id": self.client_id})
        if self._endpoint.availability:
            self.publish(self._endpoint.availability, ONLINE, retain=True)

    def _dispatch(self, generation: int, pending: _Pending, token: int) -> None:
        with self.broker._lock:
            if generation != self._generation:
                return  # delivered to a connection that is gone: the session delivers it again
            handlers = [h for _s, f, h in self._subs if matches(f, pending.topic)]

        def ack() -> None:
            self.broker._ack(self.client_id, token)

        manual = self._endpoint.manual_ack
        message = Message(pending.topic, pending.payload, retained=pending.retained, duplicate=pending.duplicate,
                          _ack=ack if manual else None)
        for handler in handlers:
            try:
                handler(message)
            except Exception:
                log.exception("message handler failed", extra={"client_id": self.client_id, "topic": pending.topic})
        if not manual or not handlers:
            ack()
