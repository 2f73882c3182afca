#!/usr/bin/env python3
"""``make demo``: the whole loop on real footage, every service real and local.

Steps, each one small function:

1. fetch the clips through the asset cache (``patrol assets fetch``),
2. start the GStreamer RTSP server (scripts/rtsp_server.py) serving them on loop, and a private
   mosquitto broker (the embedded default: no set-up, gone when the demo ends),
3. write the demo site config ``var/demo/site.yaml`` (a no-parking zone along the kerb),
4. start the ticket service and the review page (with a demo operator), printing the address and login,
5. run ``patrol run`` on it for a bounded time; incident events are printed as JSON lines, committed
   to ``var/demo/patrol.db`` and published through the outbox; evidence goes to ``var/demo/evidence``,
6. print the per-camera summary and the tickets the ticket service made, then stop everything
   (``--keep-serving`` leaves the review page up until Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / "var" / "demo"
CLIPS = {  # mount -> registered asset name (core/assets.yaml)
    "street": "vehicle_counting_input_video",
    "parking-lot": "car_detection",
}


DEMO_USER, DEMO_PASSWORD = "demo", "patrol-demo"


def load_script(name: str) -> ModuleType:
    """A sibling script loaded as a module (scripts/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def rtsp_server_module() -> ModuleType:
    return load_script("rtsp_server")


def services_module() -> ModuleType:
    return load_script("services")


def fetch_clips() -> dict[str, Path]:
    """Cached, checksum-verified paths of the demo clips (fetched from the mirror if needed)."""
    sys.path.insert(0, str(REPO))
    from core.assets import fetch

    return {mount: fetch(name) for mount, name in CLIPS.items()}


def start_rtsp_server(clips: dict[str, Path], port: int | None) -> Any:
    server = rtsp_server_module().RtspServerProcess(clips, port=port, log_path=DEMO_DIR / "rtsp_server.log")
    server.start()
    print(f"demo: RTSP server on rtsp://127.0.0.1:{server.port}/ serving {', '.join(clips)}", flush=True)
    return server


DEMO_ACCOUNTS = {"pipeline": "demo-pipeline", "tickets": "demo-tickets", "verifier": "demo-verifier",
                 "review": "demo-review"}
"""The broker account of each role; the broker's ACL lets each only its own topics (alerts/acl.py)."""


def broker_accounts() -> dict[str, dict[str, str]]:
    """One account per role with a fresh random password (they live only in var/demo/site.yaml)."""
    return {role: {"username": user, "password": secrets.token_urlsafe(16)} for role, user in DEMO_ACCOUNTS.items()}


def site_config(urls: dict[str, str], broker_port: int, review_port: int,
                accounts: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Two cameras: the street with a no-parking zone over the right-hand kerb, the lot without zones;
    the broker, database, evidence store and review page all local to ``var/demo``."""
    kerb = {"id": "right-kerb", "type": "no_parking", "limit_s": 10, "close_grace_s": 10,
            "polygon": [[0.47, 0.30], [0.72, 0.30], [0.72, 0.55], [0.47, 0.55]]}
    return {
        "version": 1,
        "site": {"name": "demo", "timezone": "Asia/Shanghai"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "client_id": "demo", "accounts": accounts},
        "database": {"url": f"sqlite:///{DEMO_DIR / 'patrol.db'}"},
        "evidence": {"dir": str(DEMO_DIR / "evidence"), "pre_roll_s": 4, "post_roll_s": 4},
        "review": {"host": "127.0.0.1", "port": review_port, "secret_file": str(DEMO_DIR / "review-secret"),
                   "language": "zh-CN"},
        "tickets": {"routes": {"*": {"illegal_parking": "traffic_police", "street_stall": "urban_management",
                                     "fallen_branch": "greening", "obstruction": "urban_management",
                                     "camera_offline": "public_security_video"}}},
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


def patrol(*argv: str) -> list[str]:
    return [sys.executable, "-m", "patrol", *argv]


def start_broker(accounts: dict[str, dict[str, str]]) -> Any:
    """mosquitto with a password file and the per-role ACL: each service connects as its own role."""
    from alerts.acl import acl_text
    from core.topics import Topics

    acl = acl_text({role: a["username"] for role, a in accounts.items()}, Topics())  # type: ignore[misc]
    broker = services_module().Mosquitto(users={a["username"]: a["password"] for a in accounts.values()}, acl=acl)
    broker.start()
    print(f"demo: MQTT broker (mosquitto) on 127.0.0.1:{broker.port}, one account and ACL per role "
          f"({', '.join(accounts)})", flush=True)
    return broker


def start_service(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    log = (DEMO_DIR / f"{name}.log").open("wb")
    return subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def start_review(config_path: Path, port: int) -> subprocess.Popen[bytes]:
    """The review page with a demo operator; prints where to log in."""
    secret = DEMO_DIR / "operator-password"
    secret.write_text(DEMO_PASSWORD + "\n", encoding="utf-8")
    subprocess.run(patrol("review", "add-operator", DEMO_USER, "--config", str(config_path),
                          "--password-file", str(secret)), cwd=REPO, check=True, capture_output=True)
    proc = start_service("review", patrol("review", "serve", "--config", str(config_path)))
    services_module().wait_port(port, 60, proc)
    print(f"demo: review page http://127.0.0.1:{port}/  (login {DEMO_USER} / {DEMO_PASSWORD})", flush=True)
    return proc


def run_patrol(config_path: Path, duration: float) -> int:
    """``patrol run`` in a child process (as an operator would run it); its output passes through."""
    cmd = patrol("run", "--config", str(config_path), "--duration", str(duration), "--pipeline-id", "demo",
                 "--summary", "--summary-json", str(DEMO_DIR / "summary.json"))
    print(f"demo: {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd, cwd=REPO, check=False).returncode


def print_tickets(config_path: Path, wait_s: float = 15.0) -> int:
    """The tickets the ticket service made from the published incidents (waits for it to catch up)."""
    deadline = time.monotonic() + wait_s
    tickets: list[Any] = []
    while time.monotonic() < deadline:
        out = subprocess.run(patrol("tickets", "list", "--config", str(config_path)), cwd=REPO,
                             capture_output=True, text=True, check=False)
        tickets = json.loads(out.stdout or "[]") if out.returncode == 0 else []
        if tickets:
            break
        time.sleep(1.0)
    print(f"demo: {len(tickets)} ticket(s) made by the ticket service", flush=True)
    for t in tickets:
        print("  " + json.dumps(t, ensure_ascii=False), flush=True)
    return len(tickets)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def reset_demo_state() -> None:
    """Each demo starts from an empty database and evidence store (the clips stay cached)."""
    for name in ("patrol.db", "patrol.db-wal", "patrol.db-shm"):
        (DEMO_DIR / name).unlink(missing_ok=True)
    shutil.rmtree(DEMO_DIR / "evidence", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bright Patrol demo: RTSP footage -> patrol run -> tickets")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run the pipeline (default 30)")
    parser.add_argument("--port", type=int, help="RTSP port (default: a free one)")
    parser.add_argument("--keep-serving", action="store_true", help="leave the review page up until Ctrl-C")
    args = parser.parse_args(argv)
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    reset_demo_state()
    clips = fetch_clips()
    services = services_module()
    review_port = services.free_port()
    server = broker = tickets = review = None
    try:
        server = start_rtsp_server(clips, args.port)
        accounts = broker_accounts()
        broker = start_broker(accounts)
        config = site_config({mount: server.url(mount) for mount in clips}, broker.port, review_port, accounts)
        path = write_site_config(config, DEMO_DIR / "site.yaml")
        print(f"demo: site config {path.relative_to(REPO)}", flush=True)
        subprocess.run(patrol("check-config", str(path)), cwd=REPO, check=True)
        tickets = start_service("tickets", patrol("tickets", "serve", "--config", str(path)))
        review = start_review(path, review_port)
        code = run_patrol(path, args.duration)
        made = print_tickets(path)
        print(f"demo: summary JSON in {(DEMO_DIR / 'summary.json').relative_to(REPO)}; evidence in "
              f"{(DEMO_DIR / 'evidence').relative_to(REPO)}; logs in {DEMO_DIR.relative_to(REPO)}/*.log", flush=True)
        if args.keep_serving:
            print(f"demo: review page stays up at http://127.0.0.1:{review_port}/ — Ctrl-C to stop", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                review.wait()
        if code == 0 and made == 0:
            print("demo: no ticket was made — see var/demo/tickets.log", file=sys.stderr)
            code = 1
    finally:
        stop(review)
        stop(tickets)
        if broker is not None:
            broker.close()
        if server is not None:
            server.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
