"""The stream password never reaches a log line (text or JSON), an exception, a metric label,
the summary or an event — in-process and through the real ``patrol run`` command."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from run_helpers import closed_port

from camera_config.loader import parse_config
from core.fakes import ScriptedDetector
from patrol.commands.run import format_summary
from patrol.logs import JsonFormatter, RedactingFilter, TextFormatter
from pipeline.sources import Source, SourceState
from pipeline.worker import PatrolWorker
from rules.analyzer import camera_analyzer

SECRET = "S3cretPass"
REPO = Path(__file__).resolve().parents[2]


def exception_texts(exc: BaseException | None) -> list[str]:
    out = []
    while exc is not None:
        out += [str(exc), repr(exc), *map(str, getattr(exc, "args", ()))]
        exc = exc.__cause__ or exc.__context__
    return out


def wait_until(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_unreachable_camera_never_shows_its_password(caplog: pytest.LogCaptureFixture) -> None:
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port()}/stream1"
    cfg = parse_config({"site": {"name": "r"}, "cameras": [{
        "id": "gate", "url": url, "grid_cell": "G1",
        "watchdog": {"backoff_initial_s": 0.1, "backoff_max_s": 0.2, "open_timeout_s": 2}}]})
    worker = PatrolWorker(cfg, analyzer_factory=camera_analyzer,
                          detector_loader=lambda _m, _s: ScriptedDetector.nothing())
    src = worker.cameras["gate"].source
    caplog.set_level(logging.DEBUG)
    t = threading.Thread(target=worker.run)
    t.start()
    try:
        wait_until(lambda: src.metrics.reconnects >= 2, 30)
    finally:
        worker.request_stop()
        t.join(30)
    assert src.state is SourceState.STOPPED
    summary = worker.summary()
    texts = [caplog.text, worker.summary_json(), format_summary(summary), src.safe_url,
             generate_latest(worker.registry).decode(), str(src.metrics.last_error)]
    for record in caplog.records:
        texts += [record.getMessage(), *(str(v) for v in record.__dict__.values())]
    # through the project's handlers too: text and JSON formatters behind the redacting filter
    for fmt in (TextFormatter(), JsonFormatter()):
        for record in caplog.records:
            RedactingFilter().filter(record)
            texts.append(fmt.format(record))
    assert "Connection refused" in str(src.metrics.last_error)
    assert "admin:***@127.0.0.1" in src.metrics.last_error
    assert not [t for t in texts if SECRET in t]


def test_source_error_chain_is_credential_free(tmp_path: Path) -> None:
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port()}/x"
    src = Source("cam", url, lambda f: None)
    with pytest.raises(Exception) as info:
        src._open()
    assert "cam" in str(info.value)
    assert not [t for t in exception_texts(info.value) if SECRET in t]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("log_json", [False, True], ids=["text-logs", "json-logs"])
def test_patrol_run_output_is_credential_free(rtsp_server: Any, asset_path: Any, tmp_path: Path,
                                               log_json: bool) -> None:
    srv = rtsp_server({"street": asset_path("vehicle_counting_input_video")}, user="bob", password=SECRET)
    cameras = {
        "ok": srv.url("street", user="bob", password=SECRET),  # right password: streams
        # 401 Unauthorized, from a server of its own: a refused client must not hold up the one that streams
        "wrong": rtsp_server({"street": asset_path("vehicle_counting_input_video")}, user="bob", password=SECRET)
        .url("street", user="bob", password=SECRET + "X"),
        "down": f"rtsp://bob:{SECRET}@127.0.0.1:{closed_port()}/street",  # connection refused
    }
    config = {"site": {"name": "redaction"},
              "database": {"url": f"sqlite:///{tmp_path / 'patrol.db'}"},
              "evidence": {"dir": str(tmp_path / "evidence")},
              # the broker is down too, and its password must not leak either
              "mqtt": {"host": "127.0.0.1", "port": closed_port(), "username": "bob", "password": SECRET},
              "cameras": [
        {"id": cid, "url": url, "grid_cell": "G1", "analysis_fps": 2,
         "watchdog": {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "open_timeout_s": 10}}
        for cid, url in cameras.items()]}
    cfg_path = tmp_path / "site.yaml"
    cfg_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    summary_path = tmp_path / "summary.json"
    # 25 s: the right-password camera must get past connecting and the keyframe probe even on a busy
    # 2-core CI machine, where a 12 s run once ended with it still connecting
    cmd = [sys.executable, "-m", "patrol", "--log-level", "debug", *(["--log-json"] if log_json else []),
           "run", "--config", str(cfg_path), "--duration", "25", "--summary", "--summary-json", str(summary_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr + summary_path.read_text(encoding="utf-8")
    tail = out[-4000:]
    assert proc.returncode == 0, tail
    assert SECRET not in out
    assert "bob:***@127.0.0.1" in out, tail  # the URLs were there, redacted
    assert "401" in out or "Unauthorized" in out, tail
    assert "Connection refused" in out, tail
    ok_block = proc.stdout.split("camera ok: ")[1].split("camera wrong")[0]
    assert ok_block.startswith("stopped") and "frames in 0 " not in ok_block, tail  # right password streams
