"""Fixtures of the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_helpers import write_clip


@pytest.fixture(scope="session")
def block_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "block.mp4")
