"""One transport interface for everything that carries messages out of (and into) the patrol.

Modelled on frigate's ``Communicator`` base (publish, subscribe, stop), with what "never lose an
alert" needs on top: a publish returns an :class:`Ack` the caller can wait on (QoS 1: the broker
has the message), subscriptions are re-established after every reconnect, a retained availability
topic with a last will, and retained state a subscriber that connects later still reads.

Implementations: :class:`alerts.mqtt.MqttTransport` (paho, a real broker) and
:class:`alerts.memory.InMemoryTransport` (an in-process broker for tests and single-process demos).
Both pass the same contract tests (tests/alerts/test_transport_contract.py).

Who a transport is on the bus is an :class:`Endpoint`; users get a :data:`TransportFactory` and
make their own endpoint from it (the ticket service makes a fresh transport after a database
failure, so its unacknowledged messages come back).

Manual acknowledgement (``Endpoint(manual_ack=True)``): a handler's message stays unacknowledged
until it calls :meth:`Message.ack` — the ticket service does so only after its transaction
committed. A message left unacknowledged is delivered again after the next reconnect of a
persistent session. Without ``manual_ack`` a message is acknowledged when its handler returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Who a transport is on the bus.

    ``availability``: a topic that gets a retained "online" after every connect, "offline" on a
    clean stop and, as the last will, "offline" when the connection ends uncleanly. ``persistent``:
    the broker keeps the session (subscriptions, QoS 1 messages that arrive while we are away,
    unacknowledged messages) across disconnects.
    """

    client_id: str
    availability: str | None = None
    persistent: bool = False
    manual_ack: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """One received message, as handlers see it (no client library objects)."""

    topic: str
    payload: bytes
    retained: bool = False
    duplicate: bool = False
    """The broker may have delivered it before (a redelivery after a reconnect)."""
    _ack: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def ack(self) -> None:
        """Acknowledge (manual-ack endpoints; a no-op otherwise). Call once, after the work is durable."""
        if self._ack is not None:
            self._ack()

    def text(self) -> str:
        return self.payload.decode("utf-8")


Handler = Callable[[Message], None]


@runtime_checkable
class Ack(Protocol):
    """What :meth:`Transport.publish` returns."""

    @property
    def accepted(self) -> bool:
        """False when the transport refused the message at once (not connected): no ack will come."""
        ...

    def wait(self, timeout: float) -> bool:
        """True once the broker acknowledged the message (QoS 1 PUBACK); False on timeout or refusal."""
        ...


class Transport(Protocol):
    """A connection to a message broker, kept up in the background."""

    @property
    def endpoint(self) -> Endpoint: ...

    @property
    def connected(self) -> bool: ...

    def start(self) -> None:
        """Connect in the background; keeps retrying while the broker is away."""
        ...

    def stop(self, *, offline: bool = True) -> None:
        """End cleanly: "offline" to the availability topic first (unless ``offline=False``); no last will."""
        ...

    def wait_connected(self, timeout: float) -> bool:
        """True once connected with every subscription made so far in place (a message published
        after this returns reaches them); False after ``timeout``."""
        ...

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> Ack:
        """Send at QoS 1; ``retain`` keeps it as the topic's state for later subscribers (empty clears)."""
        ...

    def subscribe(self, topic_filter: str, handler: Handler, *, shared_group: str | None = None) -> None:
        """Call ``handler`` for every message matching ``topic_filter`` (in a ``shared_group``: each
        message goes to one member of the group). Kept across reconnects; may be called before start."""
        ...

    def on_connected(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every (re)connect, once the subscriptions are in place."""
        ...


TransportFactory = Callable[[Endpoint], Transport]
"""Makes a transport for an endpoint: :func:`alerts.mqtt.mqtt_transports` from config, or an
:class:`alerts.memory.InMemoryBroker`'s ``transport``."""


def as_bytes(payload: bytes | str) -> bytes:
    return payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)


@dataclass(slots=True)
class Settled:
    """An :class:`Ack` whose outcome is known when it is made (in-memory broker, refusals)."""

    accepted: bool

    def wait(self, timeout: float) -> bool:  # the outcome is already known
        return self.accepted
