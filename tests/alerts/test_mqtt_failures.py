"""TLS and login failures (issue 14 item 6) against a real mosquitto with a plain and a TLS listener.

A wrong CA, TLS pointed at the plain port, plain pointed at the TLS port and a wrong password each give
one ERROR line within seconds naming the broker's host:port and the reason; the transport says it is
unhealthy (``is_healthy()``, ``last_error``) and keeps retrying with its capped backoff; a broker that
comes up later is connected to, and the error clears.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.mqtt import RECONNECT_MAX_S, MqttTransport
from alerts.transport import Endpoint
from camera_config.schema import MqttConfig, MqttTls
from pipeline.probes import connected_probe

PASSWORD = "right-Passw0rd"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(services: Any) -> Iterator[Any]:
    """mosquitto with user ``pipeline``: plain on ``.port``, TLS (a throwaway CA) on ``.tls_port``."""
    if shutil.which("mosquitto") is None or shutil.which("openssl") is None:
        pytest.skip("mosquitto or openssl not installed (scripts/install_system_deps.sh)")
    with services.Mosquitto(users={"pipeline": PASSWORD}, tls=True) as b:
        yield b


def wait_for(cond: Callable[[], Any], timeout: float) -> float:
    started = time.monotonic()
    while not cond():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def transport(port: int, *, password: str = PASSWORD, ca: Path | None = None, name: str = "t") -> MqttTransport:
    tls = MqttTls(ca_file=str(ca)) if ca is not None else None
    cfg = MqttConfig(host="127.0.0.1", port=port, username="pipeline", password=password,
                     tls=tls, client_id=name)
    return MqttTransport(cfg, Endpoint(client_id=name))


CASES: dict[str, tuple[Callable[[Any], dict[str, Any]], str]] = {
    "wrong-ca": (lambda b: {"port": b.tls_port, "ca": b.other_ca_file},
                 "TLS certificate not trusted (self-signed certificate in certificate chain): check mqtt.tls.ca_file"),
    "tls-to-plain-port": (lambda b: {"port": b.port, "ca": b.ca_file},
                          "TLS handshake failed (ConnectionResetError"),
    "plain-to-tls-port": (lambda b: {"port": b.tls_port},
                          "connection closed before the broker answered CONNECT (Unspecified error): is this port a "
                          "TLS listener? (mqtt.tls is not set)"),
    "bad-password": (lambda b: {"port": b.port, "password": "wrong-Passw0rd"},
                     "broker refused the login: Not authorized (user 'pipeline'; check mqtt.username and "
                     "mqtt.password)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_failure_is_one_clear_error_unhealthy_and_retried(broker: Any, case: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    settings, words = CASES[case]
    kwargs = settings(broker)
    caplog.set_level(logging.DEBUG, logger="alerts.mqtt")
    t = transport(name=case, **kwargs)
    t.start()
    try:
        took = wait_for(lambda: t.last_error is not None, 5.0)
        assert not t.is_healthy() and not t.connected
        # retried with backoff 1 s, 2 s, ... (capped at RECONNECT_MAX_S): two more attempts within ~3 s
        wait_for(lambda: t.failed_attempts >= 3, 1 + 2 + RECONNECT_MAX_S)
        assert not t.connected and not t.is_healthy()
        # readiness (/readyz) says not ready, and why
        assert connected_probe(t, f"broker {t.broker}")() == f"broker {t.broker} not connected: {t.last_error}"
    finally:
        t.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # one line, not one per attempt
    assert errors[0].startswith(f"mqtt broker 127.0.0.1:{kwargs['port']}: {words}"), errors
    assert t.last_error is not None and t.last_error.startswith(f"mqtt broker 127.0.0.1:{kwargs['port']}: {words}")
    assert took < 5.0
    assert not [r for r in caplog.records if PASSWORD in r.getMessage() or "wrong-Passw0rd" in r.getMessage()]


def test_right_ca_and_password_over_tls_is_healthy(broker: Any) -> None:
    t = transport(broker.tls_port, ca=broker.ca_file, name="good-tls")
    t.start()
    try:
        assert t.wait_connected(10)
        assert t.is_healthy() and t.last_error is None and t.failed_attempts == 0
        assert connected_probe(t, "broker")() is None
        assert t.publish("patrol/v1/test", b"x").wait(5)
    finally:
        t.stop()


def test_a_broker_that_comes_later_is_connected_and_the_error_clears(caplog: pytest.LogCaptureFixture,
                                                                     services: Any) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (scripts/install_system_deps.sh)")
    port = services.free_port()
    caplog.set_level(logging.INFO, logger="alerts.mqtt")
    t = transport(port, name="later")
    t.start()
    try:
        wait_for(lambda: t.failed_attempts >= 2, 10)
        assert t.last_error == f"mqtt broker 127.0.0.1:{port}: connection refused: nothing listens on that port"
        with services.Mosquitto(port=port, users={"pipeline": PASSWORD}):
            took = wait_for(t.is_healthy, RECONNECT_MAX_S + 5)
            assert t.last_error is None and t.failed_attempts == 0
    finally:
        t.stop()
    assert took <= RECONNECT_MAX_S + 5
    messages = [r.getMessage() for r in caplog.records]
    assert sum("connection refused" in m for m in messages) == 1, messages  # one line, not one per attempt
    assert any(m.startswith("mqtt connected after") for m in messages), messages
