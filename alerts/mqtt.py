"""The MQTT implementation of :class:`alerts.transport.Transport` (paho-mqtt, MQTT v5).

Topic names are built in :mod:`core.topics`. Broker credentials come from
:class:`camera_config.schema.MqttConfig`; the password is never logged. paho is imported here and
nowhere else in the package: everything above talks to :class:`MqttTransport` through the interface,
made from config by :func:`mqtt_transports`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alerts.transport import OFFLINE, ONLINE, Ack, Endpoint, Handler, Message, Settled, TransportFactory, as_bytes
from camera_config.schema import MqttConfig
from core.errors import PatrolError
from core.topics import Topics, matches, split_shared

log = logging.getLogger(__name__)

QOS = 1
"""At least once, for every message: consumers drop redeliveries by (incident id, seq) or request id,
so exactly once (QoS 2, two more round trips per message) would buy nothing."""
SESSION_EXPIRY_S = 7 * 86_400
"""A persistent session outlives a week away (a pipeline or ticket service down over a long weekend
still gets what was queued for it); mosquitto's own default is to keep sessions forever."""
MAX_INFLIGHT = 100
"""Unacknowledged QoS 1 messages in flight; the outbox sends batches of 200 and waits per message."""
STOP_ACK_S = 2.0
"""How long a clean stop waits for the broker to take the "offline" message."""


class BrokerError(PatrolError):
    """The broker cannot be reached, refused us, or did not acknowledge in time."""


RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 5
"""paho's reconnect backoff: doubling from 1 s, capped at 5 s (a broker back after a restart is seen
within 6 s; a wrong password or CA costs one attempt per 5 s, logged once)."""


class _Client(mqtt.Client):
    """paho's client, keeping why the last connection attempt failed: paho's ``on_connect_fail`` is
    called without the exception, so an untrusted certificate and a refused port would look alike."""

    last_connect_error: BaseException | None = None
    on_attempt: Callable[[], None] | None = None

    def reconnect(self) -> MQTTErrorCode:
        self.last_connect_error = None
        if self.on_attempt is not None:
            self.on_attempt()
        try:
            return super().reconnect()
        except OSError as exc:  # ssl.SSLError included
            self.last_connect_error = exc
            raise


def make_client(cfg: MqttConfig, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho MQTT v5 client with auth and TLS from config (not yet connected)."""
    client = _Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                     protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
    if cfg.tls is not None:
        try:
            client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file, keyfile=cfg.tls.key_file,
                           cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise BrokerError(f"mqtt tls: cannot load certificates: {exc}") from exc
        client.tls_insecure_set(cfg.tls.insecure)
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    return client


@dataclass(slots=True)
class _PahoAck:
    info: mqtt.MQTTMessageInfo

    @property
    def accepted(self) -> bool:
        return self.info.rc == mqtt.MQTT_ERR_SUCCESS

    def wait(self, timeout: float) -> bool:
        if not self.accepted:
            return False
        try:
            self.info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):  # the connection went away meanwhile
            return False
        return self.info.is_published()


@dataclass(frozen=True, slots=True)
class _Subscription:
    subscription: str  # what goes to the broker, "$share/..." included
    topic_filter: str  # what a message's topic is matched against
    handler: Handler


class MqttTransport:
    """One paho client kept connected in its background thread, with reconnects and a last will.

    Subscriptions are sent again after every (re)connect, so a broker restart never leaves a
    consumer deaf; then the ``on_connected`` callbacks run, then "online" goes (retained) to the
    endpoint's availability topic. ``connected`` turns true once the broker acknowledged those
    subscriptions (SUBACK): a message published after ``wait_connected`` returns reaches them.
    """

    def __init__(self, cfg: MqttConfig, endpoint: Endpoint) -> None:
        self.cfg = cfg
        self._endpoint = endpoint
        self.client = make_client(cfg, endpoint.client_id, manual_ack=endpoint.manual_ack)
        self._connected = threading.Event()
        self._live = False  # the session is up: a new subscription goes straight to the broker
        self._suback_mid: int | None = None  # the reconnect's SUBSCRIBE, until acknowledged
        self._lock = threading.Lock()
        self._subscriptions: list[_Subscription] = []
        self._on_connected: list[Callable[[], None]] = []
        if endpoint.availability:
            self.client.will_set(endpoint.availability, OFFLINE, qos=QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._dispatch
        self.client.on_connect_fail = self._on_connect_fail
        if isinstance(self.client, _Client):
            self.client.on_attempt = self._on_attempt
        self._connack = False  # this attempt got the broker's CONNACK
        self._attempt_failed = False  # this attempt's failure is already reported
        self._last_error: str | None = None
        self._logged_error: str | None = None  # the failure last logged at ERROR (a repeat logs at DEBUG)
        self.failed_attempts = 0
        """Connection attempts that failed since the last success (or since start)."""

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def client_id(self) -> str:
        return self._endpoint.client_id

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed (broker, reason, what to check); None once connected."""
        return self._last_error

    def is_healthy(self) -> bool:
        """Connected, subscriptions acknowledged, and no failure since."""
        return self.connected and self._last_error is None

    # -- the interface ---------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S if self._endpoint.persistent else 0
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                  clean_start=not self._endpoint.persistent, properties=props)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, *, offline: bool = True) -> None:
        if offline and self._endpoint.availability and self.connected:
            self.publish(self._endpoint.availability, OFFLINE, retain=True).wait(STOP_ACK_S)
        self.client.disconnect()
        self.client.loop_stop()
        self._down()

    def kill(self) -> None:
        """End as a crash would: the socket closes without DISCONNECT, so the broker sends the last will."""
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)  # type: ignore[attr-defined]  # a real socket here, not a websocket
        self.client.loop_stop()
        self._down()

    def _down(self) -> None:
        with self._lock:
            self._live = False
            self._suback_mid = None
            self._connected.clear()

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> Ack:
        try:
            info = self.client.publish(topic, as_bytes(payload), qos=QOS, retain=retain)
        except (ValueError, RuntimeError) as exc:  # paho: bad topic, payload too large
            log.error("mqtt publish refused", extra={"client_id": self.client_id, "topic": topic, "error": str(exc)})
            return Settled(False)
        return _PahoAck(info)

    def subscribe(self, topic_filter: str, handler: Handler, *, shared_group: str | None = None) -> None:
        subscription = Topics.shared(topic_filter, shared_group) if shared_group else topic_filter
        _group, inner = split_shared(subscription)
        with self._lock:  # with _on_connect's snapshot: either it sends this one, or we do
            self._subscriptions.append(_Subscription(subscription, inner, handler))
            if self._live:
                self.client.subscribe(subscription, qos=QOS)

    def on_connected(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._on_connected.append(callback)

    # -- paho callbacks (its network thread) -----------------------------------------------------

    def _dispatch(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            handlers = [s.handler for s in self._subscriptions if matches(s.topic_filter, msg.topic)]
        acked = False

        def ack() -> None:
            nonlocal acked
            if not acked:
                acked = True
                self.client.ack(msg.mid, msg.qos)

        message = Message(msg.topic, bytes(msg.payload), retained=bool(msg.retain), duplicate=bool(msg.dup),
                          _ack=ack if self._endpoint.manual_ack else None)
        if not handlers:  # nobody here wants it (a subscription the session kept from before)
            message.ack()
        for handler in handlers:
            try:
                handler(message)
            except Exception:  # a handler's bug must not kill the network thread
                log.exception("mqtt message handler failed", extra={"client_id": self.client_id,
                                                                     "topic": msg.topic})

    # -- connection failures: one clear line per new reason, health and last_error follow ----------

    def _on_attempt(self) -> None:
        self._connack = False
        self._attempt_failed = False

    def _failed(self, reason: str) -> None:
        if self._attempt_failed:
            return
        self._attempt_failed = True
        self.failed_attempts += 1
        self._last_error = f"mqtt broker {self.broker}: {reason}"
        if self._last_error != self._logged_error:
            self._logged_error = self._last_error
            log.error("%s; retrying every %d s at most", self._last_error, RECONNECT_MAX_S,
                      extra={"client_id": self.client_id, "broker": self.broker})
        else:
            log.debug("%s (attempt %d)", self._last_error, self.failed_attempts, extra={"client_id": self.client_id})

    def _on_connect_fail(self, client: mqtt.Client, _u: Any) -> None:
        exc = getattr(client, "last_connect_error", None)
        self._failed(describe_connect_error(exc, tls=self.cfg.tls is not None))

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connack = True
        if reason.is_failure:
            self._failed(describe_refusal(str(reason), self.cfg.username))
            return
        if self.failed_attempts:
            log.info("mqtt connected after %d failed attempt(s)", self.failed_attempts,
                     extra={"client_id": self.client_id, "broker": self.broker})
        self.failed_attempts = 0
        self._last_error = self._logged_error = None
        log.info("mqtt connected", extra={"client_id": self.client_id, "broker": f"{self.cfg.host}:{self.cfg.port}"})
        with self._lock:
            subscriptions = list(dict.fromkeys(s.subscription for s in self._subscriptions))
            callbacks = list(self._on_connected)
            self._live = True
            self._suback_mid = client.subscribe([(s, QOS) for s in subscriptions])[1] if subscriptions else None
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("mqtt on-connect callback failed", extra={"client_id": self.client_id})
        if self._endpoint.availability:
            client.publish(self._endpoint.availability, ONLINE, qos=QOS, retain=True)
        with self._lock:
            if self._suback_mid is None:
                self._connected.set()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[Any], _p: Any) -> None:
        refused = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.warning("mqtt subscription refused", extra={"client_id": self.client_id, "reasons": ",".join(refused)})
        with self._lock:
            if mid == self._suback_mid:
                self._suback_mid = None
                self._connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not self._connack and getattr(reason, "is_failure", True):  # closed before the broker answered
            self._failed(describe_early_close(str(reason), tls=self.cfg.tls is not None))
        if self.connected:
            level = logging.WARNING if getattr(reason, "is_failure", True) else logging.INFO  # ours: info
            log.log(level, "mqtt disconnected", extra={"client_id": self.client_id, "reason": str(reason)})
        self._down()


def describe_connect_error(exc: BaseException | None, *, tls: bool) -> str:
    """What a failed TCP/TLS connect means, and what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate not trusted ({exc.verify_message or exc.reason}): check mqtt.tls.ca_file "
                f"(the CA that signed the broker's certificate) and the host name")
    if tls and isinstance(exc, ssl.SSLError | ConnectionResetError | BrokenPipeError | ssl.SSLEOFError):
        return (f"TLS handshake failed ({type(exc).__name__}: {exc}): is this port a TLS listener? "
                f"(mqtt.tls is set)")
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on that port"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (timed out): wrong host or port, or a firewall"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name ({exc})"
    if exc is None:
        return "connection failed"
    return f"connection failed ({type(exc).__name__}: {exc})"


def describe_early_close(reason: str, *, tls: bool) -> str:
    """The broker closed the connection before answering CONNECT."""
    if not tls:
        return (f"connection closed before the broker answered CONNECT ({reason}): is this port a TLS "
                f"listener? (mqtt.tls is not set)")
    return f"connection closed before the broker answered CONNECT ({reason})"


def describe_refusal(reason: str, username: str | None) -> str:
    """The broker answered CONNECT with a failure reason code."""
    if reason in ("Bad user name or password", "Not authorized"):
        who = f"user {username!r}" if username else "anonymous access"
        return f"broker refused the login: {reason} ({who}; check mqtt.username and mqtt.password)"
    return f"broker refused the connection: {reason}"


def mqtt_transports(cfg: MqttConfig) -> TransportFactory:
    """The one place an MQTT transport is made from config: ``mqtt_transports(site.mqtt)(endpoint)``."""

    def make(endpoint: Endpoint) -> MqttTransport:
        return MqttTransport(cfg, endpoint)

    return make
