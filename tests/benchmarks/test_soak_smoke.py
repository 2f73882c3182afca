"""The soak benchmark (benchmarks/soak.py) runs end to end in a 90 s smoke mode so it cannot rot: real
RTSP server, mosquitto, ``patrol run`` and ``patrol tickets serve`` subprocesses, SQLite files, every
fault of the schedule made for real. The figures it prints must add up: every produced event committed,
delivered and ticketed, none lost, no duplicate ticket, nothing left open.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FAULTS = ["broker stopped", "broker started", "ticket service SIGKILLed", "ticket service restarted",
          "broker stopped", "broker started", "patrol run SIGKILLed", "patrol run restarted",
          "ticket service SIGKILLed", "ticket service restarted", "database made immutable (chattr +i)",
          "database writable again", "patrol run stopped (SIGTERM)"]


@pytest.mark.timeout(400)
def test_soak_smoke_loses_nothing(rtsp_server_module: Any, tmp_path: Path) -> None:
    for tool in ("mosquitto", "chattr"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/install_system_deps.sh)")
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--minutes", "1.5", "--freeze-s", "10",
                           "--json", str(out), "--keep", str(tmp_path / "work")],
                          cwd=REPO, capture_output=True, text=True, timeout=380, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    summary = json.loads(proc.stdout.splitlines()[0])
    assert summary["lost"] == r["lost"] == 0
    assert r["produced"] > 0 and r["by_event"]["opened"] > 0 and r["by_event"]["closed"] > 0
    assert r["committed"] == r["delivered"] == r["ticketed"] == r["produced"], r
    assert r["lost_keys"] == [] and r["not_committed"] == [] and r["applied_not_produced"] == 0
    assert r["duplicate_tickets"] == 0 and r["open_incidents"] == 0 and r["dead_letters"] == 0
    assert r["tickets"] > 0 and r["problems"] == []
    whats = [row["what"] for row in r["timeline"]]
    assert [w for w in whats if w in FAULTS] == FAULTS, whats


def test_soak_refuses_a_freeze_longer_than_the_schedule_allows() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--minutes", "1", "--freeze-s", "30"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "--freeze-s 30.0 does not fit in a 1.0-minute schedule" in proc.stderr
