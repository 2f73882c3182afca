"""File sources through PyAV: time sampling, keyframe-only decoding, truncated and missing files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from core.errors import SourceEnded
from core.types import Frame
from pipeline.sources import KeyframeClock, Source, SourceState, is_live_url

STREET = "vehicle_counting_input_video"  # 640x352, 24 fps, 905 frames, keyframe every 2 s


def stream_facts(path: Path) -> tuple[int, int]:
    """(packets, keyframe packets) counted by demuxing alone, independently of Source."""
    with av.open(str(path)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        return len(packets), sum(1 for p in packets if p.is_keyframe)


def run_file(path: Path | str, **kwargs: Any) -> tuple[Source, list[Frame]]:
    frames: list[Frame] = []
    src = Source("cam1", str(path), frames.append, realtime=False, **kwargs)
    src.run()  # the reader loop, synchronously: a file ends by itself
    return src, frames


def test_file_source_samples_by_stream_time(asset_path: Any) -> None:
    src, frames = run_file(asset_path(STREET), analysis_fps=2.0)
    assert [s for _, s in src.state_history] == [SourceState.CONNECTING, SourceState.STREAMING,
                                                 SourceState.STOPPED]
    assert src.error is None
    pts = np.array([f.pts for f in frames])
    assert 74 <= len(frames) <= 76  # 37.7 s at 2 fps
    gaps = np.diff(pts)  # one frame per 0.5 s of stream time, each within one frame (1/24 s) of its slot
    assert np.all(np.abs(gaps - 0.5) <= 1 / 24 + 1e-3) and abs(gaps.mean() - 0.5) < 0.01
    f = frames[0]
    assert f.camera_id == "cam1" and f.image.shape == (352, 640, 3) and f.image.dtype == np.uint8
    assert f.wall_time > 1.6e9
    assert src.metrics.packets == 905 and src.metrics.frames_decoded == 905
    assert src.metrics.frames_in == len(frames)
    assert src.metrics.keyframe_only is False
    assert src.metrics.keyframe_interval_s == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(("analysis_fps", "keyframe_only"), [(0.25, True), (0.5, True), (1.0, False)])
def test_keyframe_only_decoding_when_analysis_interval_exceeds_gop(
        asset_path: Any, analysis_fps: float, keyframe_only: bool) -> None:
    path = asset_path(STREET)
    packets, keyframes = stream_facts(path)
    skip_modes: set[str] = set()
    src, frames = run_file(path, analysis_fps=analysis_fps,
                           on_packet=lambda _p, stream: skip_modes.add(stream.codec_context.skip_frame))
    m = src.metrics
    print(f"\nanalysis every {1 / analysis_fps:g} s, keyframe every {m.keyframe_interval_s:.2f} s: "
          f"decoded {m.frames_decoded} of {m.packets} packets (ratio {m.frames_decoded / m.packets:.3f}; "
          f"keyframes/frames {keyframes / packets:.3f}), sampled {len(frames)}")
    assert m.packets == packets
    assert m.keyframe_only is keyframe_only
    if keyframe_only:
        assert "NONKEY" in skip_modes
        assert m.frames_decoded == keyframes  # not one frame of the first GOP decoded in full
        assert all(f.keyframe for f in frames)
        step = round(1 / analysis_fps)
        assert [round(f.pts) for f in frames] == list(range(0, 38, step))
    else:
        assert skip_modes == {"DEFAULT"}
        assert m.frames_decoded == packets
        assert len(frames) == 38
    if analysis_fps == 0.5:  # analysis interval equal to the keyframe interval: every keyframe is used
        assert len(frames) == keyframes


def test_keyframe_only_can_be_forced_off(asset_path: Any) -> None:
    src, _ = run_file(asset_path(STREET), analysis_fps=0.25, keyframe_only=False)
    assert src.metrics.frames_decoded == 905 and not src.metrics.keyframe_only


def test_stream_info_and_packet_listener(asset_path: Any) -> None:
    seen: list[tuple[int | None, bool]] = []
    infos = []

    def listener(packet: av.Packet, stream: Any) -> None:
        seen.append((packet.pts, packet.is_keyframe))
        if not infos:
            infos.append(src.stream_info)

    src = Source("cam1", str(asset_path(STREET)), lambda f: None, realtime=False, on_packet=listener)
    src.run()
    assert len(seen) == 905 and seen[0][1]
    info = infos[0]
    assert info.codec_name == "h264" and (info.width, info.height) == (640, 352)
    assert info.time_base.denominator == 90_000 and info.extradata
    assert src.stream_info is None  # only valid while connected


def test_truncated_file_fails_with_clear_error(asset_path: Any, tmp_path: Path) -> None:
    data = asset_path("car_detection").read_bytes()  # moov first: a cut file still opens
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    src, frames = run_file(cut, analysis_fps=1.0)
    assert src.state is SourceState.FAILED
    assert isinstance(src.error, SourceEnded)
    msg = str(src.error)
    assert "cam1" in msg and str(cut) in msg and "truncated" in msg and "30.16 s declared" in msg
    assert frames, "frames before the cut are still delivered"


def test_file_without_index_fails_at_open(asset_path: Any, tmp_path: Path) -> None:
    data = asset_path(STREET).read_bytes()  # moov at the end: a cut file has no index
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:100_000])
    src, frames = run_file(cut)
    assert src.state is SourceState.FAILED and not frames
    assert "cannot open file" in str(src.error) and str(cut) in str(src.error)
    assert isinstance(src.error.__cause__, av.error.InvalidDataError)


def test_missing_file_fails(tmp_path: Path) -> None:
    src, _ = run_file(tmp_path / "nope.mp4")
    assert src.state is SourceState.FAILED and "no such file" in str(src.error)


def test_bad_analysis_fps() -> None:
    with pytest.raises(ValueError, match="analysis_fps"):
        Source("cam1", "x.mp4", lambda f: None, analysis_fps=0)


@pytest.mark.parametrize(("url", "live"), [("rtsp://h/x", True), ("RTSP://u:p@h:554/x", True),
                                           ("/data/a.mp4", False), ("file:///data/a.mp4", False),
                                           ("C:/x.mp4", False), ("https://h/x.m3u8", True)])
def test_is_live_url(url: str, live: bool) -> None:
    assert is_live_url(url) is live


def test_keyframe_clock_ignores_duplicates_and_resets() -> None:
    clock = KeyframeClock()
    for t in (0.0, 0.0, 2.0, 2.0, 4.0):
        clock.add(t)
    assert clock.interval_s == 2.0
    clock.add(1.0)  # pts went backwards (new connection): start over
    assert clock.interval_s is None
    clock.add(6.0)
    assert clock.interval_s == 5.0


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0),
                                                 (50, 5.0), (10_000, 5.0)])
def test_backoff_is_capped_exponential(failures: int, delay: float) -> None:
    from camera_config.schema import Watchdog
    from pipeline.sources import backoff_delay

    assert backoff_delay(Watchdog(backoff_initial_s=0.5, backoff_max_s=5.0), failures) == delay


@pytest.mark.parametrize("clip", ["pedestrian_survaillance", "evadb_traffic_10fps", "car_detection"])
def test_every_packet_becomes_a_frame_including_the_decoders_tail(asset_path: Any, clip: str) -> None:
    """Full decoding ends with a decoder flush: frames held back (B-frames, threads) are not lost."""
    path = asset_path(clip)
    packets, _ = stream_facts(path)
    src, frames = run_file(path, analysis_fps=30.0, keyframe_only=False)
    assert src.state is SourceState.STOPPED, src.error
    assert src.metrics.packets == src.metrics.frames_decoded == packets
    assert np.all(np.diff([f.pts for f in frames]) > 0)


def test_keyframe_only_decoding_skips_the_loop_filter_and_every_frame_decoding_keeps_it(asset_path: Any) -> None:
    _, fast = run_file(asset_path(STREET), analysis_fps=0.5, keyframe_only=True)
    _, full = run_file(asset_path(STREET), analysis_fps=0.5, keyframe_only=False)
    assert fast[0].keyframe and full[0].keyframe and fast[0].pts == full[0].pts == 0.0
    diff = np.abs(fast[0].image.astype(np.int16) - full[0].image.astype(np.int16))
    assert diff.max() > 0  # block edges left unfiltered ...
    assert diff.mean() < 3.0  # ... a grey level or so on average (1.3 on this low-bitrate clip)


@pytest.mark.parametrize("live", [True, False])
def test_leaving_keyframe_only_decoding_after_the_decoder_opened(asset_path: Any, live: bool,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A live camera reconnects (a fresh decoder deblocks every frame); a file goes on to its end."""
    from core.errors import SourceError
    from pipeline.sources import _StreamReader

    src = Source("cam1", str(asset_path(STREET)), lambda f: None, realtime=False, analysis_fps=0.5)
    src.live = live  # the decision under test; the bytes come from the file either way
    with av.open(str(asset_path(STREET))) as container:
        stream = container.streams.video[0]
        reader = _StreamReader(src, stream)
        for packet in container.demux(stream):
            reader.packet(packet)
            if reader.decoded:
                break
        assert reader.keyframe_only and reader.loop_filter_skipped and stream.codec_context.is_open
        if live:
            with pytest.raises(SourceError, match=r"'cam1'.*keyframe interval grew.*reconnecting"):
                reader._set_keyframe_only(False)
        else:
            reader._set_keyframe_only(False)
            assert not reader.keyframe_only and "without the loop filter" in caplog.text


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priorities are a Unix feature")
def test_reader_threads_run_nicer_than_the_process(asset_path: Any) -> None:
    from pipeline.sources import READER_NICE

    niceness: list[int] = []
    src = Source("cam1", str(asset_path(STREET)), lambda f: None, realtime=True, analysis_fps=0.5,
                 on_packet=lambda _p, _s: niceness.append(os.getpriority(os.PRIO_PROCESS, 0))
                 if not niceness else None)
    src.start()
    try:
        deadline = time.monotonic() + 10
        while not niceness and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        src.stop()
        src.join(10)
    assert niceness == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + READER_NICE)]
