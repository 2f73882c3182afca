"""The transport contract (alerts/transport.py), one table of tests run against both implementations:
:class:`alerts.memory.InMemoryTransport` on an in-process broker, and :class:`alerts.mqtt.MqttTransport`
against a real mosquitto (the ``mosquitto`` fixture).

No test sleeps for a fixed time: "nothing else came" is checked by sending a probe after the thing
that must not arrive, and waiting for the probe (a broker keeps one publisher's order per subscriber).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from alerts.memory import InMemoryBroker
from alerts.mqtt import mqtt_transports
from alerts.transport import OFFLINE, ONLINE, Ack, Endpoint, Message, Transport, TransportFactory
from camera_config.schema import MqttConfig
from core.topics import Topics

TOPICS = Topics()
WAIT_S = 20.0
"""Upper bound for anything to arrive; a broker on this machine delivers in milliseconds, a
reconnect after a broker restart takes up to paho's 5 s maximum reconnect delay."""


@dataclass
class Bus:
    """One implementation under test: how to make transports, and how to restart its broker."""

    name: str
    transports: TransportFactory
    stop_broker: Callable[[], None]
    start_broker: Callable[[], None]


@pytest.fixture(params=["memory", "mqtt"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "memory":
        broker = InMemoryBroker()
        yield Bus("memory", broker.transport, broker.stop, broker.start)
        return
    mosquitto = request.getfixturevalue("mosquitto")
    yield Bus("mqtt", mqtt_transports(MqttConfig(host="127.0.0.1", port=mosquitto.port)),
              mosquitto.stop, mosquitto.start)


class Inbox:
    """A handler that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._cv = threading.Condition()

    def __call__(self, message: Message) -> None:
        with self._cv:
            self.messages.append(message)
            self._cv.notify_all()

    def payloads(self) -> list[bytes]:
        with self._cv:
            return [m.payload for m in self.messages]

    def wait_for(self, cond: Callable[[list[Message]], bool], timeout: float = WAIT_S) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not cond(self.messages) and time.monotonic() < deadline:
                self._cv.wait(0.05)
            return list(self.messages)

    def wait_payload(self, payload: bytes, timeout: float = WAIT_S) -> list[Message]:
        return self.wait_for(lambda ms: any(m.payload == payload for m in ms), timeout)


@pytest.fixture
def started() -> Iterator[Callable[[Transport], Transport]]:
    """``started(transport)``: start it, wait for the connection, stop it after the test."""
    running: list[Transport] = []

    def start(transport: Transport) -> Transport:
        transport.start()
        running.append(transport)
        assert transport.wait_connected(WAIT_S), f"{transport.endpoint.client_id} never connected"
        return transport

    yield start
    for transport in running:
        transport.stop(offline=False)


def until_heard(publisher: Transport, inbox: Inbox, topic: str, payload: bytes = b"probe") -> list[Message]:
    """Publish ``payload`` to ``topic`` until ``inbox`` has it (a SUBSCRIBE is asynchronous); what
    the inbox holds then."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        publisher.publish(topic, payload).wait(5)
        if any(m.payload == payload for m in inbox.wait_payload(payload, 0.5)):
            return inbox.messages
    raise AssertionError(f"{payload!r} on {topic} never arrived")


def test_publish_is_acknowledged_and_reaches_a_subscriber(bus: Bus, started: Any) -> None:
    inbox = Inbox()
    sub = bus.transports(Endpoint("contract-sub"))
    sub.subscribe(TOPICS.incidents, inbox)  # before start: sent on connect
    started(sub)
    pub = started(bus.transports(Endpoint("contract-pub")))
    until_heard(pub, inbox, TOPICS.incident("probe", "cam-0"))

    ack = pub.publish(TOPICS.incident("illegal_parking", "cam-1"), '{"seq": 1, "note": "größer"}')
    assert isinstance(ack, Ack) and ack.accepted
    assert ack.wait(5)
    got = inbox.wait_payload('{"seq": 1, "note": "größer"}'.encode())[-1]
    assert (got.topic, got.retained, got.text()) == ("patrol/v1/incidents/illegal_parking/cam-1", False,
                                                     '{"seq": 1, "note": "größer"}')
    pub.publish(TOPICS.health("cam-1"), b"not an incident").wait(5)  # outside the filter
    assert b"not an incident" not in [m.payload for m in until_heard(pub, inbox, TOPICS.incident("p", "c"), b"p2")]


def test_once_connected_its_subscriptions_are_in_place(bus: Bus, started: Any) -> None:
    """What the ticket service relies on: no message published after ``wait_connected`` is missed
    (a SUBSCRIBE still on its way would miss it, as this test did before the SUBACK was awaited)."""
    pub = started(bus.transports(Endpoint("contract-first-pub")))
    for round_ in range(3):
        inbox = Inbox()
        sub = bus.transports(Endpoint(f"contract-first-{round_}", persistent=True))
        # a group of its own: a stopped persistent member still takes its turn (queued for it)
        sub.subscribe(TOPICS.incidents, inbox, shared_group=f"first-{round_}")
        sub.subscribe(TOPICS.verify_result(), inbox, shared_group=f"first-{round_}")
        started(sub)
        assert pub.publish(TOPICS.incident("illegal_parking", "cam-1"), f"first-{round_}").wait(5)
        assert inbox.wait_payload(f"first-{round_}".encode())[0].payload == f"first-{round_}".encode()
        sub.stop(offline=False)


def test_a_transport_that_is_not_connected_refuses_to_publish(bus: Bus) -> None:
    never_started = bus.transports(Endpoint("contract-idle"))
    ack = never_started.publish(TOPICS.incident("illegal_parking", "cam-1"), b"{}")
    assert not never_started.connected
    assert (ack.accepted, ack.wait(0.2)) == (False, False)


def test_subscriptions_and_connect_callbacks_survive_a_broker_restart(bus: Bus, started: Any) -> None:
    inbox, connects = Inbox(), []
    sub = bus.transports(Endpoint("contract-resub"))  # a clean session: the broker forgets it on restart
    sub.subscribe(TOPICS.verify_request(), inbox)
    sub.on_connected(lambda: connects.append(time.monotonic()))
    started(sub)
    pub = started(bus.transports(Endpoint("contract-resub-pub")))
    until_heard(pub, inbox, TOPICS.verify_request("cam-1"), b"before")

    bus.stop_broker()
    deadline = time.monotonic() + WAIT_S
    while (sub.connected or pub.connected) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sub.connected and not pub.connected
    bus.start_broker()
    assert sub.wait_connected(WAIT_S) and pub.wait_connected(WAIT_S)
    until_heard(pub, inbox, TOPICS.verify_request("cam-2"), b"after")
    assert len(connects) >= 2


def test_a_shared_group_gets_each_message_once(bus: Bus, started: Any) -> None:
    members = [Inbox(), Inbox()]
    for i, inbox in enumerate(members):
        member = bus.transports(Endpoint(f"contract-member-{i}"))
        member.subscribe(TOPICS.incidents, inbox, shared_group="tickets")
        started(member)
    pub = started(bus.transports(Endpoint("contract-shared-pub")))
    deadline = time.monotonic() + WAIT_S  # both members' SUBSCRIBEs are in: each got a probe
    n = 0
    while not all(m.messages for m in members) and time.monotonic() < deadline:
        n += 1
        pub.publish(TOPICS.incident("probe", "cam-0"), f"probe-{n}").wait(5)
        time.sleep(0.05)
    assert all(m.messages for m in members)

    def events(inbox: Inbox) -> list[bytes]:
        return [p for p in inbox.payloads() if p.startswith(b"event-")]

    sent = [f"event-{i}".encode() for i in range(20)]
    for payload in sent:
        assert pub.publish(TOPICS.incident("illegal_parking", "cam-1"), payload).wait(5)
    deadline = time.monotonic() + WAIT_S
    while sum(len(events(m)) for m in members) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    got = [p for m in members for p in events(m)]
    assert sorted(got) == sorted(sent)  # every one, none twice
    assert all(events(m) for m in members)  # spread over both


def test_retained_state_reaches_a_subscriber_that_comes_later(bus: Bus, started: Any) -> None:
    pub = started(bus.transports(Endpoint("contract-retain-pub")))
    assert pub.publish(TOPICS.health("cam-1"), b'{"state": "online"}', retain=True).wait(5)
    assert pub.publish(TOPICS.health("cam-2"), b'{"state": "offline"}', retain=True).wait(5)
    assert pub.publish(TOPICS.health("cam-2"), b"", retain=True).wait(5)  # cleared
    assert pub.publish(TOPICS.health("cam-3"), b"not kept").wait(5)

    late = Inbox()
    sub = bus.transports(Endpoint("contract-late"))
    sub.subscribe(TOPICS.health(), late)
    started(sub)
    got = until_heard(pub, late, TOPICS.health("probe"))
    kept = [(m.topic, m.payload, m.retained) for m in got if m.payload != b"probe"]
    assert kept == [("patrol/v1/health/cam-1", b'{"state": "online"}', True)]


def test_availability_is_online_while_connected_and_the_last_will_says_offline(bus: Bus, started: Any) -> None:
    topic = TOPICS.availability("contract-pipe")
    watcher = Inbox()
    watch = bus.transports(Endpoint("contract-watcher"))
    watch.subscribe(topic, watcher)
    started(watch)

    pipe = bus.transports(Endpoint("contract-pipe", availability=topic))
    pipe.start()
    assert pipe.wait_connected(WAIT_S)
    assert watcher.wait_payload(ONLINE)[-1].payload == ONLINE
    kill: Callable[[], None] = pipe.kill  # type: ignore[attr-defined]  # what a crash does, both have it
    kill()  # no clean DISCONNECT: the broker publishes the will
    assert [m.payload for m in watcher.wait_payload(OFFLINE)][-2:] == [ONLINE, OFFLINE]

    late = Inbox()
    again = bus.transports(Endpoint("contract-late-watcher"))
    again.subscribe(topic, late)
    started(again)
    assert [(m.payload, m.retained) for m in late.wait_for(bool)] == [(OFFLINE, True)]

    clean = bus.transports(Endpoint("contract-pipe", availability=topic))  # back, then a clean stop
    clean.start()
    assert clean.wait_connected(WAIT_S)
    watcher.wait_for(lambda ms: [m.payload for m in ms][-1:] == [ONLINE])
    clean.stop()
    assert [m.payload for m in watcher.wait_for(lambda ms: ms[-1].payload == OFFLINE)][-2:] == [ONLINE, OFFLINE]


def test_an_unacknowledged_message_comes_again_to_the_session_and_an_acknowledged_one_does_not(
        bus: Bus, started: Any) -> None:
    endpoint = Endpoint("contract-manual", persistent=True, manual_ack=True)
    first = Inbox()

    def ack_only_kept(message: Message) -> None:
        first(message)
        if message.payload != b"not-acked":
            message.ack()

    consumer = bus.transports(endpoint)
    consumer.subscribe(TOPICS.incidents, ack_only_kept, shared_group="tickets")
    started(consumer)
    pub = started(bus.transports(Endpoint("contract-manual-pub")))
    until_heard(pub, first, TOPICS.incident("probe", "cam-0"))
    assert pub.publish(TOPICS.incident("illegal_parking", "cam-1"), b"acked").wait(5)
    assert pub.publish(TOPICS.incident("illegal_parking", "cam-1"), b"not-acked").wait(5)
    first.wait_payload(b"not-acked")
    consumer.stop(offline=False)  # the ticket service after a database failure

    second = Inbox()

    def ack_all(message: Message) -> None:
        second(message)
        message.ack()

    again = bus.transports(endpoint)  # same client id, persistent session
    again.subscribe(TOPICS.incidents, ack_all, shared_group="tickets")
    started(again)
    second.wait_payload(b"not-acked")
    got = [m.payload for m in until_heard(pub, second, TOPICS.incident("probe", "cam-0"), b"probe-2")]
    assert b"not-acked" in got and b"acked" not in got
