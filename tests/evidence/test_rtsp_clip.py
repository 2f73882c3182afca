"""Clips from a real RTSP stream (GStreamer server, H.264 pass-through): packets arrive in Annex B
without MP4 framing and keyframes may be unflagged; the clip must still start on a keyframe, cover
pre + post roll and read cleanly."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest

from evidence.clip import ClipResult, ClipWriter
from evidence.errors import EvidenceError
from evidence.ring import PacketRing, h264_has_idr
from pipeline.sources import Source

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_h264_idr_detection() -> None:
    assert h264_has_idr(b"\x00\x00\x00\x01\x67sps\x00\x00\x00\x01\x68pps\x00\x00\x01\x65slice")
    assert not h264_has_idr(b"\x00\x00\x00\x01\x41slice\x00\x00\x01\x01x")
    assert not h264_has_idr(b"")


def test_clip_from_a_live_rtsp_camera(rtsp_server: Any, asset_path: Any, tmp_path: Path) -> None:
    srv = rtsp_server({"street": asset_path("vehicle_counting_input_video")})
    writer = ClipWriter()
    ring = PacketRing("rtsp-cam", keep_s=10, on_ready=writer.submit)
    done = threading.Event()
    results: list[ClipResult | EvidenceError] = []
    last_pts: list[float] = []

    def on_done(outcome: ClipResult | EvidenceError) -> None:
        results.append(outcome)
        done.set()

    source = Source("rtsp-cam", srv.url("street"), lambda f: last_pts.append(f.pts), analysis_fps=2,
                    on_packet=ring.on_packet).start()
    try:
        deadline = time.monotonic() + 60
        while (not last_pts or last_pts[-1] - last_pts[0] < 6.0) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert last_pts and last_pts[-1] - last_pts[0] >= 6.0, "RTSP stream did not deliver 6 s of frames"
        at = last_pts[-1]
        assert ring.request_clip("inc-rtsp-0001", at, 3.0, 2.0, tmp_path / "clip.mp4", on_done)
        assert done.wait(30), "clip not finished 30 s after the post-roll should have arrived"
    finally:
        source.stop()
        source.join(20)
        writer.close()
    (result,) = results
    assert isinstance(result, ClipResult), result
    assert not result.truncated and result.duration >= 5.0
    probe = subprocess.run(["ffprobe", "-v", "error", str(tmp_path / "clip.mp4")], capture_output=True,
                           text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout == "" and probe.stderr == ""
    with av.open(str(tmp_path / "clip.mp4")) as clip:
        stream = clip.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.width) == ("h264", 640)
        first = next(p for p in clip.demux(stream) if p.size)
        assert first.is_keyframe
        frames = sum(1 for _ in clip.decode(video=0))
    assert frames >= 5.0 * 24 * 0.9
