"""``patrol review add-operator`` and ``patrol review serve`` as a user runs them."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from browser_kit import free_port
from sqlalchemy import select

from patrol.cli import main
from storage.db import open_database
from storage.models import Operator


def _config(tmp_path: Path, port: int = 8080) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "site": {"name": "cli test"},
        "cameras": [{"id": "cam-1", "url": "rtsp://admin:hunter2@10.0.0.5/stream", "grid_cell": "G-01"}],
        "database": {"url": f"sqlite:///{tmp_path / 'patrol.db'}"},
        "evidence": {"dir": str(tmp_path / "evidence")},
        "review": {"host": "127.0.0.1", "port": port, "secret_file": str(tmp_path / "secret")},
    }))
    return path


def test_add_operator_from_stdin_and_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("first-password\n"))
    assert main(["review", "add-operator", "ann", "--config", str(cfg)]) == 0
    (tmp_path / "pw").write_text("second-password\n")
    assert main(["review", "add-operator", "ben", "--config", str(cfg), "--password-file", str(tmp_path / "pw")]) == 0
    assert main(["review", "add-operator", "ann", "--config", str(cfg), "--password-file", str(tmp_path / "pw")]) == 2
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["review", "add-operator", "cat", "--config", str(cfg)]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["review", "add-operator", "../evil", "--config", str(cfg), "--password-file",
                 str(tmp_path / "pw")]) == 2
    db = open_database(f"sqlite:///{tmp_path / 'patrol.db'}")
    with db.transaction() as s:
        ops = {o.username: o.password_hash for o in s.scalars(select(Operator))}
    db.dispose()
    assert set(ops) == {"ann", "ben"}
    assert all(h.startswith("$argon2id$") and "password" not in h for h in ops.values())


@pytest.mark.integration
def test_serve_prints_its_address_and_guards_pages(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, port)
    proc = subprocess.Popen([sys.executable, "-m", "patrol", "review", "serve", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for _ in range(50):  # log lines (stderr) come first
            seen.append(proc.stdout.readline())
            if "review page:" in seen[-1]:
                break
        assert f"review page: http://127.0.0.1:{port}/" in seen[-1], seen
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not answer"
                time.sleep(0.2)
        assert r.status_code == 200 and "Log in" in r.text
        q = httpx.get(f"http://127.0.0.1:{port}/queue", follow_redirects=False, timeout=5)
        assert q.status_code == 303 and q.headers["location"].startswith("/login")
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "hunter2" not in out
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0


def test_retention_command_dry_run_then_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    cfg = _config(tmp_path)
    old = time.time() - 40 * 86_400
    for incident_id, opened in (("inc-old-000001", old), ("inc-new-000002", time.time())):
        folder = tmp_path / "evidence" / incident_id
        folder.mkdir(parents=True)
        (folder / "clip.mp4").write_bytes(b"\0" * 1000)
        (folder / "manifest.json").write_text(json.dumps({"times": {"opened_at": opened}}))
    assert main(["review", "retention", "--config", str(cfg), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete inc-old-000001" in out and "inc-new-000002" not in out
    assert (tmp_path / "evidence" / "inc-old-000001").exists()
    assert main(["review", "retention", "--config", str(cfg)]) == 0
    assert "deleted 1 incident folder(s)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == ["inc-new-000002"]


def test_roles_and_the_operator_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    (tmp_path / "pw").write_text("a-good-password\n")
    pw = ["--config", str(cfg), "--password-file", str(tmp_path / "pw")]
    assert main(["review", "add-operator", "erin", *pw, "--role", "engineer"]) == 0
    assert "role engineer" in capsys.readouterr().out
    assert main(["review", "add-operator", "dora", *pw, "--role", "department", "--department", "greening"]) == 0
    assert main(["review", "add-operator", "dan", *pw, "--role", "department"]) == 2
    assert "needs --department" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse names the choices
        main(["review", "add-operator", "root", *pw, "--role", "superuser"])
    assert main(["review", "disable-operator", "erin", "--config", str(cfg)]) == 0
    assert main(["review", "remove-operator", "dora", "--config", str(cfg)]) == 0
    assert "'dora': removed" in capsys.readouterr().out
    assert main(["review", "remove-operator", "dora", "--config", str(cfg)]) == 2
    assert "no operator 'dora'" in capsys.readouterr().err
    db = open_database(f"sqlite:///{tmp_path / 'patrol.db'}")
    with db.transaction() as s:
        ops = {o.username: (o.role, o.department, o.disabled) for o in s.scalars(select(Operator))}
    db.dispose()
    assert ops == {"erin": ("engineer", None, True)}
    assert main(["review", "enable-operator", "erin", "--config", str(cfg)]) == 0
    assert "'erin': enabled" in capsys.readouterr().out
