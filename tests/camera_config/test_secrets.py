"""Secrets from the environment (``${VAR}``) and from files (``<field>_file``), never printed.

Unit tests of the loader's resolution and the redaction registry, then a real ``patrol run`` (two
worker processes, an RTSP camera with a password, a camera that is down, a broker with a password)
whose secrets come from the environment: they appear in no log line, no message on the broker, no
database row and no evidence file.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from camera_config import load_config
from camera_config.secrets import expand_env
from core import redact
from core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CAM_SECRET = "Cam-S3cret-7781"
MQTT_SECRET = "Mq-S3cret-4410"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    redact.forget_secrets()
    yield
    redact.forget_secrets()


def write_site(tmp_path: Path, camera: dict[str, Any], mqtt_cfg: dict[str, Any] | None = None) -> Path:
    cfg: dict[str, Any] = {"site": {"name": "secrets"}, "cameras": [{"id": "gate", "grid_cell": "G1", **camera}]}
    if mqtt_cfg is not None:
        cfg["mqtt"] = mqtt_cfg
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_env_reference_fills_the_field_and_is_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_PW", CAM_SECRET)
    monkeypatch.setenv("MQTT_PW", MQTT_SECRET)
    path = write_site(tmp_path, {"url": "rtsp://viewer:${GATE_PW}@10.0.0.7/ch1"},
                      {"username": "pipeline", "password": "${MQTT_PW}"})
    cfg = load_config(path)
    assert cfg.cameras[0].url.get_secret_value() == f"rtsp://viewer:{CAM_SECRET}@10.0.0.7/ch1"
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == MQTT_SECRET
    # registered: masked in any text, URL or not
    assert redact.redact_text(f"login {MQTT_SECRET} and {CAM_SECRET}!") == "login *** and ***!"
    assert CAM_SECRET not in repr(cfg) and MQTT_SECRET not in cfg.model_dump_json()


def test_missing_variable_is_one_line_naming_it_and_the_field(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = write_site(tmp_path, {"url": "rtsp://viewer:${NOT_SET_ANYWHERE}@10.0.0.7/ch1"})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}: camera 'gate': cameras[0].url: environment variable 'NOT_SET_ANYWHERE' is not set"]


@pytest.mark.parametrize(("text", "expected", "problems"), [
    ("a ${X} b", "a 1 b", []),
    ("$${X} stays", "${X} stays", []),
    ("${X}${Y}", "12", []),
    ("${X", "${X", ["malformed reference '${X'"]),
    ("${not-a-name}", "${not-a-name}", ["malformed reference '${not-a-name}'"]),
    ("no reference, $X", "no reference, $X", []),
])
def test_expand_env_table(text: str, expected: str, problems: list[str]) -> None:
    out, found = expand_env(text, {"X": "1", "Y": "2"})
    assert out == expected
    assert [p.split(":")[0] for p in found] == problems


def test_password_file_and_url_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt").write_text(MQTT_SECRET + "\n", encoding="utf-8")
    (tmp_path / "secrets" / "gate-url").write_text(f"rtsp://viewer:{CAM_SECRET}@10.0.0.7/ch1\n", encoding="utf-8")
    path = write_site(tmp_path, {"url_file": "secrets/gate-url"},  # relative to the config file's folder
                      {"username": "pipeline", "password_file": str(tmp_path / "secrets" / "mqtt")})
    cfg = load_config(path)
    assert cfg.mqtt.password is not None and cfg.mqtt.password.get_secret_value() == MQTT_SECRET
    assert cfg.cameras[0].url.get_secret_value() == f"rtsp://viewer:{CAM_SECRET}@10.0.0.7/ch1"
    assert redact.redact_text(f"x{CAM_SECRET}x {MQTT_SECRET}") == "x***x ***"


@pytest.mark.parametrize(("camera", "mqtt_cfg", "field", "words"), [
    ({"url_file": "nope.txt"}, None, "cameras[0].url_file", "cannot read secret file"),
    ({"url": "a.mp4", "url_file": "x"}, None, "cameras[0].url_file", "give either 'url' or 'url_file', not both"),
    ({"url": "a.mp4"}, {"password_file": "empty.txt"}, "mqtt.password_file", "is empty"),
    ({"url": "a.mp4"}, {"ca_file_file": "x"}, "mqtt", "unknown key 'ca_file_file'"),  # only secret fields
])
def test_secret_file_problems(tmp_path: Path, camera: dict[str, Any], mqtt_cfg: dict[str, Any] | None,
                              field: str, words: str) -> None:
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    path = write_site(tmp_path, camera, mqtt_cfg)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1, info.value.problems
    assert f": {field}" in info.value.problems[0] and words in info.value.problems[0], info.value.problems


def test_check_config_never_prints_a_secret(tmp_path: Path) -> None:
    """A failing config that holds a secret: the error lines name the field, not the value."""
    env = {**os.environ, "MQTT_PW": MQTT_SECRET}
    path = write_site(tmp_path, {"url": "a.mp4", "analysis_fps": -1},
                      {"username": "pipeline", "password": "${MQTT_PW}", "port": MQTT_SECRET})
    proc = subprocess.run([sys.executable, "-m", "patrol", "check-config", str(path)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=REPO)
    assert proc.returncode == 2
    assert "cameras[0].analysis_fps" in proc.stderr and "mqtt.port" in proc.stderr
    assert MQTT_SECRET not in proc.stdout + proc.stderr


class Recorder:
    """Every message on the broker (``#``), as user ``pipeline``."""

    def __init__(self, port: int, password: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="recorder",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set("pipeline", password)
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def database_texts(db_path: Path) -> list[str]:
    conn = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [repr(row) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"')]
    finally:
        conn.close()


@pytest.mark.integration
@pytest.mark.slow
def test_secrets_from_the_environment_reach_no_log_message_or_row(
        rtsp_server: Any, asset_path: Any, tmp_path: Path, services: Any) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed (scripts/install_system_deps.sh)")
    srv = rtsp_server({"street": asset_path("vehicle_counting_input_video")}, user="bob", password=CAM_SECRET)
    with services.Mosquitto(users={"pipeline": MQTT_SECRET}) as broker:
        recorder = Recorder(broker.port, MQTT_SECRET)
        assert recorder.ready.wait(10)
        db_path = tmp_path / "patrol.db"
        config = {
            "site": {"name": "secrets"},
            "database": {"url": f"sqlite:///{db_path}"},
            "evidence": {"dir": str(tmp_path / "evidence")},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": "pipeline", "password": "${MQTT_PW}"},
            "cameras": [
                {"id": "ok", "url": srv.url("street", user="bob", password="${CAM_PW}"), "grid_cell": "G1",
                 "analysis_fps": 2},
                # down: a camera_offline incident is opened, stored and published (its URL holds the secret)
                {"id": "down", "url": f"rtsp://bob:${{CAM_PW}}@127.0.0.1:{services.free_port()}/street",
                 "grid_cell": "G2",
                 "watchdog": {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "offline_after_s": 2}},
            ]}
        cfg_path = tmp_path / "site.yaml"
        cfg_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        assert CAM_SECRET not in cfg_path.read_text() and MQTT_SECRET not in cfg_path.read_text()
        env = {**os.environ, "CAM_PW": CAM_SECRET, "MQTT_PW": MQTT_SECRET}
        cmd = [sys.executable, "-m", "patrol", "--log-level", "debug", "run", "--config", str(cfg_path),
               "--duration", "45", "--processes", "2", "--summary"]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180, env=env)
        recorder.close()
    out = proc.stdout + proc.stderr
    tail = out[-4000:]
    assert proc.returncode == 0, tail
    assert "bob:***@127.0.0.1" in out, tail  # the URLs were logged, redacted
    assert "camera ok: stopped" in out and "frames in 0 " not in out.split("camera ok: ")[1][:200], tail
    incidents = [payload for topic, payload in recorder.messages if "/incidents/" in topic]
    assert incidents, [t for t, _ in recorder.messages]  # the offline camera's incident went out
    rows = database_texts(db_path)
    assert any("camera_offline" in r for r in rows)
    evidence = [p.read_bytes() for p in (tmp_path / "evidence").rglob("*") if p.is_file()]
    for secret in (CAM_SECRET, MQTT_SECRET):
        assert secret not in out
        assert not [t for t, p in recorder.messages if secret.encode() in p or secret in t]
        assert not [r for r in rows if secret in r]
        assert not [b for b in evidence if secret.encode() in b]
