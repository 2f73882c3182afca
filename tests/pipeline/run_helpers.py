"""Helpers for the tests that run ``patrol run`` (imported by name: pytest puts this folder on the path)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A local TCP port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sigterm_once_streaming(cmd: Sequence[str], cameras: int = 1,
                           while_running: Callable[[subprocess.Popen[str]], Any] | None = None
                           ) -> tuple[subprocess.Popen[str], str, str, Any]:
    """Start ``cmd`` (a ``patrol run``), wait until ``cameras`` cameras stream and a second more, call
    ``while_running(proc)``, send SIGTERM and wait for the end: (process, stdout, stderr, what
    ``while_running`` returned)."""
    proc = subprocess.Popen(list(cmd), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        streaming = 0
        for line in proc.stderr:
            streaming += "connecting -> streaming" in line
            if streaming >= cameras:
                break
        time.sleep(1.0)
        seen = while_running(proc) if while_running is not None else None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc, out, err, seen
