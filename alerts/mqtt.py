"""The MQTT side: versioned topics, a client built from config, and a link that keeps it connected.

Topics (``prefix`` is ``patrol/v1`` by default)::

    {prefix}/incidents/{type}/{camera}     incident events, QoS 1, JSON (core/schema)
    {prefix}/availability/{pipeline}       "online" / "offline", retained, last will
    {prefix}/health/{camera}               {"camera_id","state":"online"|"offline","at"}, retained
    {prefix}/verify/request/{camera}       ticket service -> verifier
    {prefix}/verify/result/{camera}        verifier -> ticket service
    {prefix}/replay/request                {"since": unix time}: consumer -> every pipeline's outbox

Broker credentials come from :class:`camera_config.schema.MqttConfig`; the password is never logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from camera_config.schema import MqttConfig
from core.errors import PatrolError

log = logging.getLogger(__name__)

SHARED_GROUP = "tickets"


class BrokerError(PatrolError):
    """The broker cannot be reached, refused us, or did not acknowledge in time."""


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = "patrol/v1"

    def incident(self, incident_type: str, camera_id: str) -> str:
        return f"{self.prefix}/incidents/{incident_type}/{camera_id}"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}/incidents/#"

    def shared(self, topic_filter: str, group: str = SHARED_GROUP) -> str:
        return f"$share/{group}/{topic_filter}"

    def availability(self, pipeline_id: str) -> str:
        return f"{self.prefix}/availability/{pipeline_id}"

    def health(self, camera_id: str) -> str:
        return f"{self.prefix}/health/{camera_id}"

    def verify_request(self, camera_id: str = "+") -> str:
        return f"{self.prefix}/verify/request/{camera_id}"

    def verify_result(self, camera_id: str = "+") -> str:
        return f"{self.prefix}/verify/result/{camera_id}"

    @property
    def replay_request(self) -> str:
        return f"{self.prefix}/replay/request"

    def parse_incident(self, topic: str) -> tuple[str, str] | None:
        """(type, camera) of an incident topic, None for any other topic."""
        head = f"{self.prefix}/incidents/"
        if not topic.startswith(head):
            return None
        parts = topic[len(head):].split("/")
        return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def make_client(cfg: MqttConfig, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho MQTT v5 client with auth and TLS from config (not yet connected)."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
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
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    client.max_inflight_messages_set(100)
    return client


class MqttLink:
    """One client kept connected in paho's background thread, with reconnects and a last will.

    ``on_connected`` callbacks run after every (re)connect: subscribe there, so a broker restart
    never leaves a consumer deaf. ``availability`` (a topic) gets a retained "online" on connect and
    "offline" as the last will and on a clean stop.
    """

    def __init__(self, cfg: MqttConfig, client_id: str, *, availability: str | None = None,
                 persistent_session: bool = False, manual_ack: bool = False) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.availability = availability
        self.persistent_session = persistent_session
        self.client = make_client(cfg, client_id, manual_ack=manual_ack)
        self.connected = threading.Event()
        self.on_connected: list[Callable[[mqtt.Client], None]] = []
        self.on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None] | None = None
        if availability:
            self.client.will_set(availability, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._dispatch

    def _dispatch(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.on_message is not None:
            self.on_message(client, userdata, msg)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("mqtt connect refused", extra={"client_id": self.client_id, "reason": str(reason)})
            return
        log.info("mqtt connected", extra={"client_id": self.client_id, "broker": self._where()})
        for callback in self.on_connected:
            callback(client)
        if self.availability:
            client.publish(self.availability, "online", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.connected.is_set():
            level = logging.WARNING if getattr(reason, "is_failure", True) else logging.INFO  # ours: info
            log.log(level, "mqtt disconnected", extra={"client_id": self.client_id, "reason": str(reason)})
        self.connected.clear()

    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def start(self) -> None:
        """Connect in the background; keeps retrying while the broker is down."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 86_400 if self.persistent_session else 0
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                  clean_start=not self.persistent_session, properties=props)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self, *, offline: bool = True) -> None:
        """Publish "offline" (retained) when connected, then disconnect and stop the thread."""
        if offline and self.availability and self.connected.is_set():
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def publish_json(self, topic: str, payload: Any, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, json.dumps(payload, sort_keys=True), qos=1, retain=retain)
