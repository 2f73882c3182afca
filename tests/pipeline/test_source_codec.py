"""A stream whose codec PyAV cannot decode fails with "unsupported codec", naming the camera,
instead of crashing the reader on a missing codec context."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.sources import Source, SourceState


def unknown_codec_file(tmp_path: Path) -> Path:
    """A real Matroska file made by ffmpeg whose H.264 track's CodecID is rewritten to one no FFmpeg knows."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    made = tmp_path / "h264.mkv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc=size=160x120:rate=10", "-t", "2", "-c:v", "libx264", "-g", "10", str(made)],
                   check=True, timeout=60)
    data = made.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    out = tmp_path / "unknown-codec.mkv"
    out.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_PATROL/NONE/X"))  # same length: the file stays valid
    return out


def test_the_same_file_with_its_real_codec_decodes(tmp_path: Path) -> None:
    unknown_codec_file(tmp_path)
    frames: list[object] = []
    src = Source("cam-x", str(tmp_path / "h264.mkv"), frames.append, analysis_fps=5)
    src.run()
    assert src.state is SourceState.STOPPED and src.error is None and frames


def test_unsupported_codec_is_named_as_such(tmp_path: Path) -> None:
    path = unknown_codec_file(tmp_path)
    frames: list[object] = []
    src = Source("cam-x", str(path), frames.append)
    src.run()
    assert src.state is SourceState.FAILED and not frames
    message = str(src.error)
    assert message.startswith(f"camera 'cam-x': unsupported codec (unknown to FFmpeg) in {path}: "), message
    assert "no decoder" in message and "NoneType" not in message and "crashed" not in message
