"""core.progress: a bar only at a terminal, never in CI, JSON or a pipe (the eval command's own run in a
pseudo-terminal is in tests/evaluation/test_eval_errors_progress.py)."""

from __future__ import annotations

import hashlib
import io
import os
import pty
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.assets import Asset, AssetCache
from core.progress import bars_wanted, silence


@pytest.fixture()
def terminal() -> Iterator[io.TextIOWrapper]:
    master, slave = pty.openpty()
    stream = io.TextIOWrapper(os.fdopen(slave, "wb"))
    yield stream
    stream.close()
    os.close(master)


@pytest.mark.parametrize(("env", "quiet", "at_terminal", "wanted"), [
    ({}, False, True, True),
    ({}, False, False, False),                       # piped
    ({}, True, True, False),                         # --json - / --log-json
    ({"CI": "true"}, False, True, False),
    ({"CI": "1"}, False, True, False),
    ({"CI": "false"}, False, True, True),
    ({"PATROL_PROGRESS": "0"}, False, True, False),
    ({"PATROL_PROGRESS": "1"}, False, False, True),  # forced on for a terminal tqdm cannot see
    ({"PATROL_PROGRESS": "1", "CI": "true"}, False, True, True),
    ({"PATROL_PROGRESS": "1"}, True, True, False),   # JSON output wins over everything
])
def test_bars_wanted(monkeypatch: pytest.MonkeyPatch, terminal: io.TextIOWrapper, env: dict[str, str],
                     quiet: bool, at_terminal: bool, wanted: bool) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PATROL_PROGRESS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    stream = terminal if at_terminal else io.StringIO()
    assert bars_wanted(stream, quiet=quiet) is wanted


def test_silence_turns_every_bar_off(monkeypatch: pytest.MonkeyPatch, terminal: io.TextIOWrapper) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATROL_PROGRESS", "1")
    silence()
    try:
        assert bars_wanted(terminal) is False
    finally:
        silence(False)
    assert bars_wanted(terminal) is True


def test_a_fetch_shows_its_bytes_and_stores_them_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB: several reads of the cache's chunk size
    (tmp_path / "mirror" / "footage").mkdir(parents=True)
    (tmp_path / "mirror" / "footage" / "clip.mp4").write_bytes(payload)
    asset = Asset(name="clip", path="footage/clip.mp4", kind="footage", licence="MIT", source="https://x.invalid",
                  sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    monkeypatch.setenv("PATROL_PROGRESS", "1")
    path = AssetCache(tmp_path / "cache", tmp_path / "mirror", allow_download=False).fetch(asset)
    assert path.read_bytes() == payload
    err = capsys.readouterr().err
    assert "clip.mp4" in err and "/1.00M" in err, err  # bytes, scaled
    monkeypatch.setenv("PATROL_PROGRESS", "0")
    AssetCache(tmp_path / "cache2", tmp_path / "mirror", allow_download=False).fetch(asset)
    assert capsys.readouterr().err == ""
