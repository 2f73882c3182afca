"""Config validation: every malformed file gets one clear message naming file, camera and field."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from camera_config import load_config, parse_config
from core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "camera_config" / "sites" / "example.yaml"


def good() -> dict[str, Any]:
    return {
        "site": {"name": "t", "timezone": "Asia/Shanghai"},
        "cameras": [
            {"id": "cam-a", "url": "rtsp://u:pw@127.0.0.1/a", "grid_cell": "G1", "analysis_fps": 1,
             "zones": [{"id": "z1", "type": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1]]}]},
            {"id": "cam-b", "url": "file.mp4", "grid_cell": "G2"},
        ],
    }


def _unknown_key(c: dict[str, Any]) -> None:
    c["cameras"][1]["colour"] = "red"


def _two_points(c: dict[str, Any]) -> None:
    c["cameras"][0]["zones"][0]["polygon"] = [[0, 0], [1, 1]]


def _outside(c: dict[str, Any]) -> None:
    c["cameras"][0]["zones"][0]["polygon"][1] = [1.2, 0.5]


def _duplicate(c: dict[str, Any]) -> None:
    c["cameras"][1]["id"] = "cam-a"


def _negative_rate(c: dict[str, Any]) -> None:
    c["cameras"][1]["analysis_fps"] = -2


def _bad_zone_type(c: dict[str, Any]) -> None:
    c["cameras"][0]["zones"][0]["type"] = "no_dancing"


def _unknown_class(c: dict[str, Any]) -> None:
    c["cameras"][0]["detector"] = {"class_scores": {"branch": 0.3}}


def _bad_timezone(c: dict[str, Any]) -> None:
    c["site"]["timezone"] = "Mars/Olympus"


CASES = [
    # (mutation, camera named, field path named, words in the message)
    (_unknown_key, "camera 'cam-b'", "cameras[1].colour", "unknown key"),
    (_two_points, "camera 'cam-a'", "cameras[0].zones[0].polygon", "at least 3"),
    (_outside, "camera 'cam-a'", "cameras[0].zones[0].polygon[1][0]", "less than or equal to 1"),
    (_duplicate, "camera 'cam-a'", "cameras[1].id", "duplicate camera id 'cam-a'"),
    (_negative_rate, "camera 'cam-b'", "cameras[1].analysis_fps", "greater than 0"),
    (_bad_zone_type, "camera 'cam-a'", "cameras[0].zones[0].type",
     "unknown zone type 'no_dancing'; known types: keep_clear, no_parking, no_vending"),
    (_unknown_class, "camera 'cam-a'", "cameras[0].detector.class_scores", "unknown COCO class"),
    (_bad_timezone, "site", "site.timezone", "unknown time zone"),
]


def test_good_config_parses() -> None:
    cfg = parse_config(good())
    assert [c.id for c in cfg.cameras] == ["cam-a", "cam-b"]
    assert cfg.cameras[0].zones[0].type == "no_parking"


def test_example_site_is_valid() -> None:
    cfg = load_config(EXAMPLE)
    assert {z.type for z in cfg.cameras[0].zones} == {"no_parking", "no_vending", "keep_clear"}


@pytest.mark.parametrize(("mutate", "camera", "field", "words"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_problem_is_one_clear_message(tmp_path: Path, mutate: Any, camera: str, field: str,
                                           words: str) -> None:
    raw = copy.deepcopy(good())
    mutate(raw)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1, info.value.problems
    line = info.value.problems[0]
    assert line.startswith(f"{path}: {camera}: {field}"), line
    assert words in line
    assert "pw" not in line.replace("polygon", "")


@pytest.mark.parametrize(("mutate", "camera", "field", "words"), CASES[:5], ids=[c[0].__name__ for c in CASES[:5]])
def test_check_config_cli_prints_message_without_traceback(tmp_path: Path, mutate: Any, camera: str,
                                                            field: str, words: str) -> None:
    raw = copy.deepcopy(good())
    mutate(raw)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "patrol", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{camera}: {field}" in proc.stderr and words in proc.stderr


@pytest.mark.parametrize(("text", "words"), [
    ("site: [unclosed", "flow sequence at line 1, column 7"),
    ("- just\n- a list\n", "expected a mapping"),
    ("", "expected a mapping"),
])
def test_unreadable_yaml(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert words in info.value.problems[0] and str(path) in info.value.problems[0]


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_immutable() -> None:
    cfg = parse_config(good())
    with pytest.raises(Exception, match="frozen"):
        cfg.cameras[0].analysis_fps = 5  # type: ignore[misc]


def test_schema_cli_prints_json_schema() -> None:
    proc = subprocess.run([sys.executable, "-m", "patrol", "config-schema"], capture_output=True, text=True,
                          timeout=60)
    schema = json.loads(proc.stdout)
    assert schema["additionalProperties"] is False
    assert "cameras" in schema["properties"]
    zones = schema["$defs"]["Camera"]["properties"]["zones"]["items"]
    assert zones["discriminator"]["mapping"] == {name: f"#/$defs/{cls}" for name, cls in [
        ("keep_clear", "KeepClearZone"), ("no_parking", "NoParkingZone"), ("no_vending", "NoVendingZone")]}
    assert schema["$defs"]["NoParkingZone"]["properties"]["still_tolerance"]["maximum"] == 2.0


def test_secret_url_not_in_repr() -> None:
    cfg = parse_config(good())
    assert "pw" not in repr(cfg.cameras[0]) and "pw" not in str(cfg.model_dump())
