#!/usr/bin/env python3
"""``make demo``: real footage over a real RTSP server into ``patrol run``, then a per-camera summary.

Steps, each one small function so later work (broker, ticket service, review page) can slot in:

1. fetch the clips through the asset cache (``patrol assets fetch``),
2. start the GStreamer RTSP server (scripts/rtsp_server.py) serving them on loop,
3. write the demo site config ``var/demo/site.yaml`` (a no-parking zone along the kerb),
4. run ``patrol run`` on it for a bounded time; incident events are printed as JSON lines,
5. print the per-camera summary (frames, detections per class, tracks, events) and stop the server.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "var" / "demo"
CLIPS = {  # mount -> registered asset name (patrol/assets.yaml)
    "street": "vehicle_counting_input_video",
    "parking-lot": "car_detection",
}


def rtsp_server_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patrol_rtsp_server", REPO / "scripts" / "rtsp_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fetch_clips() -> dict[str, Path]:
    """Cached, checksum-verified paths of the demo clips (fetched from the mirror if needed)."""
    sys.path.insert(0, str(REPO))
    from patrol.assets import fetch

    return {mount: fetch(name) for mount, name in CLIPS.items()}


def start_rtsp_server(clips: dict[str, Path], port: int | None) -> Any:
    server = rtsp_server_module().RtspServerProcess(clips, port=port, log_path=DEMO_DIR / "rtsp_server.log")
    server.start()
    print(f"demo: RTSP server on rtsp://127.0.0.1:{server.port}/ serving {', '.join(clips)}", flush=True)
    return server


def site_config(urls: dict[str, str]) -> dict[str, Any]:
    """Two cameras: the street with a no-parking zone over the right-hand kerb, the lot without zones."""
    kerb = {"id": "right-kerb", "type": "no_parking", "limit_s": 10, "close_grace_s": 10,
            "polygon": [[0.47, 0.30], [0.72, 0.30], [0.72, 0.55], [0.47, 0.55]]}
    return {
        "version": 1,
        "site": {"name": "demo", "timezone": "Asia/Shanghai"},
        "cameras": [
            {"id": "street", "url": urls["street"], "grid_cell": "JD-0101", "analysis_fps": 2,
             "location": "residential street, right-hand kerb", "zones": [kerb]},
            {"id": "parking-lot", "url": urls["parking-lot"], "grid_cell": "JD-0102", "analysis_fps": 1,
             "location": "parking lot, overhead"},
        ],
    }


def write_site_config(config: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by scripts/demo.py\n" + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_patrol(config_path: Path, duration: float) -> int:
    """``patrol run`` in a child process (as an operator would run it); its output passes through."""
    cmd = [sys.executable, "-m", "patrol", "run", "--config", str(config_path), "--duration", str(duration),
           "--summary", "--summary-json", str(DEMO_DIR / "summary.json")]
    print(f"demo: {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd, cwd=REPO, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bright Patrol demo: RTSP footage -> patrol run -> summary")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run the pipeline (default 30)")
    parser.add_argument("--port", type=int, help="RTSP port (default: a free one)")
    args = parser.parse_args(argv)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    clips = fetch_clips()
    server = start_rtsp_server(clips, args.port)
    try:
        config = site_config({mount: server.url(mount) for mount in clips})
        path = write_site_config(config, DEMO_DIR / "site.yaml")
        print(f"demo: site config {path.relative_to(REPO)}", flush=True)
        code = run_patrol(path, args.duration)
    finally:
        server.stop()
    print(f"demo: summary JSON in {(DEMO_DIR / 'summary.json').relative_to(REPO)}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
