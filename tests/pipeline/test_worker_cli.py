"""``patrol run`` end to end: a file camera with the real detector, summary, and a clean SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from run_helpers import closed_port, sigterm_once_streaming

from patrol.cli import main

REPO = Path(__file__).resolve().parents[2]


def write_site(path: Path, cameras: dict[str, Path | str], **camera: Any) -> Path:
    """A site whose database and evidence live beside the file and whose broker is down:
    the run must publish into the outbox and carry on without the broker."""
    path.write_text(yaml.safe_dump({
        "site": {"name": "cli"},
        "database": {"url": f"sqlite:///{path.parent / 'patrol.db'}"},
        "evidence": {"dir": str(path.parent / "evidence")},
        "mqtt": {"host": "127.0.0.1", "port": closed_port()},
        "cameras": [{"id": cid, "url": str(url), "grid_cell": "G1", **camera} for cid, url in cameras.items()]}),
        encoding="utf-8")
    return path


def test_patrol_run_replays_files_and_summarises(asset_path: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    clip = asset_path("evadb_traffic_10fps")  # 5 s, 800x450 street scene with cars
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(asset_path("car_detection").read_bytes()[:900_000])
    cfg = write_site(tmp_path / "site.yaml", {"street": clip, "broken": cut}, analysis_fps=2)
    summary = tmp_path / "summary.json"
    before = signal.getsignal(signal.SIGTERM)
    code = main(["run", "--config", str(cfg), "--fast", "--summary", "--summary-json", str(summary)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    rows = {r["camera_id"]: r for r in json.loads(summary.read_text())["cameras"]}
    street = rows["street"]
    assert street["state"] == "stopped" and street["packets"] == 50 and street["frames_in"] == 10
    assert street["frames_analysed"] >= 1 and street["detections"].get("car", 0) >= 1
    assert rows["broken"]["state"] == "failed" and "truncated" in rows["broken"]["last_error"]
    assert "camera street: stopped" in out and "camera broken: failed" in out and "detections: " in out


def test_patrol_run_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text("site: {name: x}\ncameras: [{id: a, url: x.mp4, grid_cell: G, analysis_fps: 0}]\n")
    assert main(["run", "--config", str(cfg)]) == 2
    assert "analysis_fps" in capsys.readouterr().err


def test_patrol_run_only_the_cameras_asked_for(asset_path: Any, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    clip = asset_path("evadb_traffic_10fps")
    cfg = write_site(tmp_path / "site.yaml", {"east": clip, "west": tmp_path / "missing.mp4"}, analysis_fps=1)
    summary = tmp_path / "summary.json"
    assert main(["run", "--config", str(cfg), "--fast", "--camera", "east", "--summary-json", str(summary)]) == 0
    assert [r["camera_id"] for r in json.loads(summary.read_text())["cameras"]] == ["east"]
    assert main(["run", "--config", str(cfg), "--camera", "north"]) == 2
    assert "'north': no such camera (cameras: east, west)" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_summary(asset_path: Any, tmp_path: Path) -> None:
    cfg = write_site(tmp_path / "site.yaml", {"street": asset_path("vehicle_counting_input_video")},
                     analysis_fps=1)
    # realtime playback of a 38 s clip: stopped while it streams
    proc, out, err, _ = sigterm_once_streaming([sys.executable, "-m", "patrol", "run", "--config", str(cfg),
                                                "--summary"])
    assert proc.returncode == 0, err[-2000:]
    assert "worker stopped" in err
    assert "camera street: stopped" in out and "frames in " in out
