"""The ``patrol`` command's contract as a shell sees it: ``--version``, the documented exit codes
(0 ok, 1 runtime failure, 2 config/usage error, 130 interrupted) and a quiet closed pipe.

Each case runs a real ``python -m patrol`` process (exit status, stderr and signals are the
process's, not a function's).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def patrol(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patrol", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_version_comes_from_the_package_metadata() -> None:
    done = patrol("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"patrol {importlib.metadata.version('bright-patrol')}"


def _error(dotted: str, *args: object) -> BaseException:
    module, _, name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(*args)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("error", "code"), [
    (("core.errors.ConfigError", "site.yaml", ["site.yaml: cameras[0].url: missing"]), 2),
    (("core.errors.AssetError", "unknown asset 'x'"), 2),
    (("core.errors.PatrolError", "--clip: no such file"), 2),
    (("evaluation.labels.LabelError", "bad label"), 2),
    (("evaluation.patch.PatchError", "stale"), 2),
    (("review.security.ReviewError", "operator exists"), 2),
    (("tickets.states.TransitionError", 1, "accepted", "archived"), 2),
    (("storage.errors.NotFound", "no ticket 99"), 2),
    (("storage.errors.StorageError", "database away"), 1),
    (("core.errors.ModelError", "cannot load"), 1),
    (("core.errors.SourceError", "cam", "cannot open"), 1),
    (("pipeline.shards.ShardError", "shard 1 could not start"), 1),
    (("evidence.errors.EvidenceError", "disk full"), 1),
    (("builtins.RuntimeError", "a bug"), 1),
    (("builtins.KeyboardInterrupt",), 130),
])
def test_one_table_maps_every_ending_to_its_exit_code(error: tuple[object, ...], code: int) -> None:
    from patrol.cli import exit_code_for

    dotted, *args = error
    assert exit_code_for(_error(str(dotted), *args)) == code


def test_help_documents_the_exit_codes() -> None:
    done = patrol("--help")
    assert done.returncode == 0
    assert ("0 ok, 1 runtime failure, 2 config or usage error, 3 events neither committed nor spilled (patrol run), "
            "130 interrupted") in " ".join(done.stdout.split())


@pytest.mark.parametrize("argv", [
    ("tickets", "list", "--no-such-flag"),  # argparse: usage
    ("no-such-command",),
    ("tickets", "show", "not-a-number"),
])
def test_usage_errors_exit_2(argv: tuple[str, ...]) -> None:
    done = patrol(*argv)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "usage:" in done.stderr and "Traceback" not in done.stderr


def test_a_config_that_does_not_validate_exits_2_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"site": {"name": "x"}, "cameras": [
        {"id": "a", "url": "x.mp4", "grid_cell": "G", "analysis_fps": 0}]}), encoding="utf-8")
    done = patrol("run", "--config", str(cfg))
    assert done.returncode == 2
    assert "analysis_fps" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_ticket_is_a_usage_error_and_a_missing_database_a_runtime_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'patrol.db'}"
    done = patrol("tickets", "show", "99", "--db", url)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    down = f"postgresql+psycopg://patrol:hunter2@127.0.0.1:{closed_port()}/patrol"
    done = patrol("tickets", "list", "--db", down)
    assert done.returncode == 1, done.stderr
    assert "Connection refused" in done.stderr and "127.0.0.1" in done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def _ticket_service(tmp_path: Path) -> subprocess.Popen[str]:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({
        "site": {"name": "x"}, "cameras": [{"id": "a", "url": "x.mp4", "grid_cell": "G"}],
        "database": {"url": f"sqlite:///{tmp_path / 'patrol.db'}"},
        "evidence": {"dir": str(tmp_path / "evidence")},
        "mqtt": {"host": "127.0.0.1", "port": closed_port()}}), encoding="utf-8")  # broker away: it waits
    proc = subprocess.Popen([sys.executable, "-m", "patrol", "tickets", "serve", "--config", str(cfg)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 90
    for line in proc.stderr:
        if "ticket service running" in line:
            break
        assert time.monotonic() < deadline, "the ticket service did not start"
    time.sleep(0.5)
    return proc


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_sigint_exits_130_and_sigterm_0_after_a_clean_stop(tmp_path: Path, sig: int, expected: int) -> None:
    proc = _ticket_service(tmp_path)
    try:
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == expected, err[-2000:]
    assert "ticket service stopped" in err and "Traceback" not in err


def test_sigint_before_any_handler_exits_130_without_a_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-c",
                             "import os, signal, sys\n"
                             "from patrol import cli\n"
                             "def slow(args):\n"
                             "    os.kill(os.getpid(), signal.SIGINT)\n"
                             "    import time; time.sleep(30)\n"
                             "import patrol.commands.models as m\n"
                             "m.models_list = slow\n"
                             "sys.exit(cli.main(['models', 'list']))\n"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a shell: SIGINT not ignored (a child inheriting SIG_IGN from the
                            # test run keeps it ignored, sleeps 30 s and exits 0 -- seen once in make test)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``patrol tickets list | head -1`` on more tickets than a pipe holds: one line out, no
    BrokenPipeError traceback, exit 1 (Python's documented status for a closed stdout)."""
    from storage import repository as repo
    from storage.db import open_database
    from storage.models import Ticket

    url = f"sqlite:///{tmp_path / 'patrol.db'}"
    db = open_database(url)
    try:
        with db.transaction() as s:
            s.add_all([Ticket(incident_id=f"inc-{i:08d}", type="illegal_parking", camera_id="cam-1",
                              grid_cell="G-01", zone_id="kerb", department="traffic_police", state="accepted",
                              created_at=1e9 + i, updated_at=1e9 + i, due_at=2e9, last_incident_at=1e9 + i)
                       for i in range(1500)])
        with db.transaction() as s:
            assert len(repo.list_tickets(s, limit=2000)) == 1500
    finally:
        db.dispose()
    done = subprocess.run(["bash", "-o", "pipefail", "-c",
                           f"{sys.executable} -m patrol tickets list --db {url} --limit 2000 | head -1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout == "[\n"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 1
