"""Fixtures of the evaluation tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from eval_helpers import write_clip


@pytest.fixture(scope="session")
def block_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "block.mp4")


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """``patrol.cli.main`` points the root logger at the sys.stderr of the moment (a capture that
    closes with the test); put the handlers back so later log lines do not hit a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
