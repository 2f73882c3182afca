"""``patrol replay`` end to end: every shared clip runs without error and twice gives the same lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.events import IncidentEvent
from patrol.cli import main

CLIPS = ["vehicle_counting_input_video", "car_detection", "pedestrian_survaillance", "evadb_traffic_10fps",
         "bgslibrary_video", "bgslibrary_video02", "bgslibrary_video03", "candela_m1_10", "hall_and_monitor"]

SITE = """\
version: 1
site: {{name: Replay test, timezone: Asia/Shanghai}}
cameras:
  - id: cam-1
    url: {clip}
    grid_cell: JD-0101
    analysis_fps: {fps}
    detector: {{model: yolox_nano_416}}
    zones:
      - {{id: kerb, type: no_parking, limit_s: 12,
         polygon: [[0.85, 0.40], [1.0, 0.40], [1.0, 0.65], [0.85, 0.65]]}}
      - {{id: ground, type: no_vending, limit_s: 10, linger_s: 5,
         polygon: [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]}}
      - {{id: road, type: keep_clear, limit_s: 5, short_term_s: 2, long_term_s: 30,
         polygon: [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]}}
"""


def write_site(tmp_path: Path, clip: Path, fps: float = 1.0) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(clip=clip, fps=fps))
    return path


def replay_lines(capsys, config: Path, clip: Path, *extra: str) -> list[str]:
    code = main(["replay", "--config", str(config), "--camera", "cam-1", "--source", str(clip), *extra])
    out = capsys.readouterr().out
    assert code == 0
    return out.splitlines()


@pytest.mark.slow
@pytest.mark.parametrize("name", CLIPS)
def test_replay_runs_on_every_clip_and_is_deterministic(name, asset_path, tmp_path, capsys) -> None:
    clip = asset_path(name)
    config = write_site(tmp_path, clip)
    first = replay_lines(capsys, config, clip)
    second = replay_lines(capsys, config, clip)
    assert first == second
    for line in first:
        event = IncidentEvent.model_validate_json(line)
        assert event.camera_id == "cam-1" and event.grid_cell == "JD-0101"
        assert event.event_at == pytest.approx(1_767_574_800.0 + (event.stream_pts or 0), abs=1e-3)
    print(f"{name}: {len(first)} event(s)", [json.loads(x)["type"] for x in first])


def test_start_time_moves_the_schedule(asset_path, tmp_path, capsys) -> None:
    """The kerb zone is banned 06:00-22:00: at 09:00 the parked car is an incident, at 23:00 it is not."""
    clip = asset_path("vehicle_counting_input_video")
    text = SITE.format(clip=clip, fps=2).replace(
        "limit_s: 12,\n", "limit_s: 12, schedule: {windows: [{start: '06:00', end: '22:00'}]},\n")
    text = text[:text.index("      - {id: ground")]  # the kerb zone alone
    config = tmp_path / "site.yaml"
    config.write_text(text)
    day = [json.loads(x) for x in replay_lines(capsys, config, clip, "--start-time", "2026-01-05T09:00:00")]
    night = [json.loads(x) for x in replay_lines(capsys, config, clip, "--start-time", "2026-01-05T23:00:00+08:00")]
    assert [e["zone_id"] for e in day if e["type"] == "illegal_parking"] == ["kerb"]
    assert [e for e in night if e["type"] == "illegal_parking"] == []


@pytest.mark.parametrize(("args", "message"), [
    (["--camera", "nope"], "no camera 'nope' (cameras: cam-1)"),
    (["--source", "/nonexistent/clip.mp4"], "no such file: /nonexistent/clip.mp4"),
    (["--start-time", "yesterday"], "--start-time 'yesterday': not an ISO 8601 time"),
])
def test_bad_input_is_one_clear_message(tmp_path, capsys, args, message) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    config = write_site(tmp_path, clip)
    base = {"--config": str(config), "--camera": "cam-1", "--source": str(clip)}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    code = main(["replay", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_not_a_video_is_a_source_error(tmp_path, capsys) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"this is not a video")
    config = write_site(tmp_path, clip)
    code = main(["replay", "--config", str(config), "--camera", "cam-1", "--source", str(clip)])
    err = capsys.readouterr().err
    assert code == 2
    assert "cam-1" in err and "Traceback" not in err


def test_replay_is_on_the_patrol_command(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "patrol", "replay", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--start-time" in out and "--source" in out
