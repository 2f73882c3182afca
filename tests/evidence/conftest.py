from __future__ import annotations

from pathlib import Path

import av
import pytest

from core.assets import fetch


@pytest.fixture(scope="session")
def street_clip() -> Path:
    """Real H.264 footage (640x352, 24 fps, keyframe every 2 s) through the asset cache."""
    return fetch("vehicle_counting_input_video")


@pytest.fixture
def no_codecs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to decode or encode a picture fails the test."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a codec ran: clips must be remuxed without decoding or encoding")

    monkeypatch.setattr(av.VideoFrame, "__init__", refuse, raising=False)
    for name in ("encode", "decode", "open"):
        monkeypatch.setattr(av.CodecContext, name, refuse)
        monkeypatch.setattr(av.video.codeccontext.VideoCodecContext, name, refuse)
