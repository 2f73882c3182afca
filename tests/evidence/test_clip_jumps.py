"""A clip across a jump in the stream's timestamps is still written (issue 14 item 7).

"remux failed: Invalid argument" came from FFmpeg's MP4 muxer refusing decode times that go back or
stand still. Real streams here: two ffmpeg-made MPEG-TS segments (H.264 with B-frames) joined back to
back, the second one's clock 0.5 s behind the first's end, or 100 s ahead, fed through the packet ring.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from evidence.clip import MAX_GAP_S, ClipResult, ClipWriter, rebase
from evidence.errors import EvidenceError
from evidence.ring import EncodedPacket, PacketRing

SEGMENT_S = 6.0


def segment(folder: Path, name: str, offset_s: float) -> Path:
    out = folder / f"{name}.ts"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc=size=160x120:rate=10", "-t", str(SEGMENT_S), "-c:v", "libx264", "-g", "20",
                    "-bf", "2", "-output_ts_offset", str(offset_s), "-f", "mpegts", str(out)],
                   check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def joined(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Streams of two segments each: the second's clock 0.5 s back, or 100 s ahead, of the first's end."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    folder = tmp_path_factory.mktemp("jumps")
    first = segment(folder, "first", 0.0).read_bytes()
    out = {}
    for name, offset in (("back", SEGMENT_S - 0.5), ("ahead", SEGMENT_S + 100.0)):
        path = folder / f"{name}.ts"
        path.write_bytes(first + segment(folder, f"second-{name}", offset).read_bytes())
        out[name] = path
    return out


def refuse_codecs(m: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a codec ran: clips must be remuxed without decoding or encoding")

    for attr in ("encode", "decode", "open"):
        m.setattr(av.CodecContext, attr, refuse)
        m.setattr(av.video.codeccontext.VideoCodecContext, attr, refuse)


def demuxed(path: Path) -> list[tuple[bytes, int | None]]:
    with av.open(str(path)) as src:
        return [(bytes(p), p.dts) for p in src.demux(src.streams.video[0]) if p.size]


def clip_across(path: Path, dest: Path, at: float = 5.0) -> tuple[ClipResult | EvidenceError, ClipWriter]:
    results: list[ClipResult | EvidenceError] = []
    writer = ClipWriter(max_queue=2)
    ring = PacketRing("cam-jump", keep_s=15, on_ready=writer.submit)
    asked = False
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        for packet in src.demux(stream):
            if not asked and packet.pts is not None and float(packet.pts * packet.time_base) >= at:
                assert ring.request_clip("inc-jump", at, 3.0, 3.0, dest, results.append)
                asked = True
            ring.on_packet(packet, stream)
    ring.end_of_stream()
    writer.close()
    (result,) = results
    return result, writer


@pytest.mark.parametrize("name", ["back", "ahead"])
def test_a_clip_across_a_timestamp_jump_is_written_and_plays(joined: dict[str, Path], tmp_path: Path,
                                                             name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / name / "clip.mp4"
    with monkeypatch.context() as m:  # the no_codecs guard of tests/evidence/conftest.py, for the remux only
        refuse_codecs(m)
        result, writer = clip_across(joined[name], dest)
    assert isinstance(result, ClipResult), result
    assert writer.written == 1 and writer.failed == 0
    assert result.timestamp_jumps == 1
    # every packet is in the clip (remuxed: no codec ran, see no_codecs), decode times strictly increase
    clip = demuxed(dest)
    assert len(clip) == result.packets
    dts = [d for _, d in clip]
    assert dts[0] == 0 and all(a is not None and b is not None and b > a for a, b in itertools.pairwise(dts))
    # a clip of what was filmed: about pre + post roll, not the 100 s the clock leapt
    assert result.duration < 3.0 + 3.0 + 3.0
    # FFmpeg reads it back without complaint
    probe = subprocess.run(["ffmpeg", "-hide_banner", "-v", "error", "-i", str(dest), "-f", "null", "-"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stderr == "", probe.stderr


def packet(pts: int | None, dts: int | None, tb: Fraction = Fraction(1, 90_000), duration: int = 9_000,
           key: bool = False) -> EncodedPacket:
    return EncodedPacket(b"x", pts, dts, duration, key, tb)


@pytest.mark.parametrize(("packets", "stamps", "jumps"), [
    # steady 10 fps: rebased to 0, nothing closed
    ([packet(90_000, 90_000), packet(99_000, 99_000), packet(108_000, 108_000)],
     [(0, 0), (9_000, 9_000), (18_000, 18_000)], 0),
    # B-frames: pts - dts offsets kept
    ([packet(99_000, 90_000), packet(117_000, 99_000), packet(108_000, 108_000)],
     [(9_000, 0), (27_000, 9_000), (18_000, 18_000)], 0),
    # the clock goes back: the rest follows one frame step later
    ([packet(0, 0), packet(9_000, 9_000), packet(18_000, 18_000), packet(1_000, 1_000), packet(10_000, 10_000)],
     [(0, 0), (9_000, 9_000), (18_000, 18_000), (27_000, 27_000), (36_000, 36_000)], 1),
    # stands still
    ([packet(0, 0), packet(9_000, 9_000), packet(9_000, 9_000)], [(0, 0), (9_000, 9_000), (18_000, 18_000)], 1),
    # leaps ahead more than MAX_GAP_S
    ([packet(0, 0), packet(9_000, 9_000), packet(9_000 + int((MAX_GAP_S + 1) * 90_000),
                                                 9_000 + int((MAX_GAP_S + 1) * 90_000))],
     [(0, 0), (9_000, 9_000), (18_000, 18_000)], 1),
    # a pause shorter than MAX_GAP_S is real time: kept
    ([packet(0, 0), packet(9_000, 9_000), packet(9_000 + 5 * 90_000, 9_000 + 5 * 90_000)],
     [(0, 0), (9_000, 9_000), (459_000, 459_000)], 0),
    # no dts: pts stands in; neither: one frame after the last
    ([packet(0, None), packet(9_000, None), packet(None, None)], [(0, 0), (9_000, 9_000), (18_000, 18_000)], 0),
    # a packet in another time base is converted to the first one's
    ([packet(0, 0), packet(100, 100, tb=Fraction(1, 1_000), duration=100)], [(0, 0), (9_000, 9_000)], 0),
])
def test_rebase_table(packets: list[EncodedPacket], stamps: list[tuple[int, int]], jumps: int) -> None:
    out, base, closed = rebase(packets)
    assert out == stamps and closed == jumps and base == Fraction(1, 90_000)
