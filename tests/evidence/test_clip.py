"""Clips are remuxed, not re-encoded: keyframe first, pre+post roll covered, bytes as in the source."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import av
import pytest

from evidence.clip import ClipResult, ClipWriter, write_clip
from evidence.errors import EvidenceError
from evidence.ring import ClipJob, PacketRing


def _source_packets(path: Path) -> list[tuple[float, bytes, bool]]:
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        return [(float(p.pts * p.time_base), bytes(p), bool(p.is_keyframe))
                for p in src.demux(stream) if p.size]


def _feed(path: Path, ring: PacketRing, on_time: dict[float, tuple]) -> None:
    """Demux ``path`` into ``ring``; at each stream time in ``on_time`` call ring.request_clip(*args)."""
    todo = sorted(on_time)
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        for packet in src.demux(stream):
            if packet.pts is not None and todo and float(packet.pts * packet.time_base) >= todo[0]:
                ring.request_clip(*on_time[todo.pop(0)])
            ring.on_packet(packet, stream)
    ring.end_of_stream()


def _probe(path: Path) -> list[tuple[float, bytes, bool]]:
    with av.open(str(path)) as clip:
        stream = clip.streams.video[0]
        return [(float(p.pts * p.time_base), bytes(p), bool(p.is_keyframe)) for p in clip.demux(stream) if p.size]


def test_clip_is_remuxed_from_the_keyframe_before_pre_roll(street_clip: Path, tmp_path: Path,
                                                          no_codecs: None) -> None:
    results: list[ClipResult | EvidenceError] = []
    writer = ClipWriter(max_queue=4)
    ring = PacketRing("cam-street", keep_s=15, on_ready=writer.submit)
    dest = tmp_path / "inc-0001" / "clip.mp4"
    at, pre, post = 9.0, 5.0, 5.0
    _feed(street_clip, ring, {at: ("inc-00000001", at, pre, post, dest, results.append)})
    writer.close()

    assert writer.written == 1 and writer.dropped == 0 and writer.failed == 0
    (result,) = results
    assert isinstance(result, ClipResult)
    source = _source_packets(street_clip)
    clip = _probe(dest)
    # starts on a keyframe, the last one at or before the pre-roll start (keyframes every ~2 s)
    assert clip[0][2]
    kf_before = max(t for t, _, k in source if k and t <= at - pre)
    assert result.start == pytest.approx(kf_before, abs=1e-3)
    # covers pre-roll + post-roll
    assert result.duration >= pre + post
    assert result.start <= at - pre and result.end >= at + post
    # packets are the source's bytes, in order: nothing was decoded or re-encoded
    first = next(i for i, (t, _, _) in enumerate(source) if abs(t - kf_before) < 1e-6)
    assert [b for _, b, _ in clip] == [b for _, b, _ in source[first:first + len(clip)]]
    # timestamps rebased to start at 0, spaced as in the source
    assert clip[0][0] == 0.0
    assert clip[-1][0] == pytest.approx(source[first + len(clip) - 1][0] - kf_before, abs=2e-3)


def test_ffprobe_reads_the_clip_cleanly_and_index_is_first(street_clip: Path, tmp_path: Path) -> None:
    results: list[ClipResult | EvidenceError] = []
    writer = ClipWriter()
    ring = PacketRing("cam-street", keep_s=8, on_ready=writer.submit)
    dest = tmp_path / "c" / "clip.mp4"
    _feed(street_clip, ring, {12.0: ("inc-00000002", 12.0, 3.0, 3.0, dest, results.append)})
    writer.close()
    out = subprocess.run(["ffprobe", "-v", "error", str(dest)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""
    data = dest.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "faststart: moov must come before mdat"
    streams = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                              "stream=codec_name,width,height", "-of", "csv=p=0", str(dest)],
                             capture_output=True, text=True, timeout=60)
    assert streams.stdout.strip() == "h264,640,352"


def test_post_roll_cut_short_by_end_of_stream_is_marked_truncated(street_clip: Path, tmp_path: Path) -> None:
    results: list[ClipResult | EvidenceError] = []
    writer = ClipWriter()
    ring = PacketRing("cam-street", keep_s=8, on_ready=writer.submit)
    dest = tmp_path / "t" / "clip.mp4"
    _feed(street_clip, ring, {35.0: ("inc-00000003", 35.0, 2.0, 30.0, dest, results.append)})
    writer.close()
    (result,) = results
    assert isinstance(result, ClipResult) and result.truncated
    assert result.start <= 33.0


def test_ring_keeps_only_what_the_pre_roll_needs(street_clip: Path) -> None:
    jobs: list[ClipJob] = []
    ring = PacketRing("cam-street", keep_s=3.0, on_ready=jobs.append)
    with av.open(str(street_clip)) as src:
        stream = src.streams.video[0]
        for packet in src.demux(stream):
            ring.on_packet(packet, stream)
    # 3 s plus at most one GOP (2 s) back to a keyframe, never the whole 37 s clip
    assert 3.0 <= ring.buffered_s <= 5.1


def test_submit_never_blocks_and_counts_drops(tmp_path: Path, street_clip: Path) -> None:
    gate = threading.Event()
    jobs: list[ClipJob] = []
    ring = PacketRing("cam-street", keep_s=4, on_ready=jobs.append)
    with av.open(str(street_clip)) as src:
        stream = src.streams.video[0]
        for i, packet in enumerate(src.demux(stream)):
            ring.on_packet(packet, stream)
            if i == 150:
                break
    assert ring.request_clip("inc-00000004", 3.0, 1.0, 1.0, tmp_path / "x.mp4")
    (job,) = jobs
    writer = ClipWriter(max_queue=1)
    original = job.on_done
    job.on_done = lambda _r: gate.wait(10)  # hold the worker busy on the first job
    assert writer.submit(job)
    accepted = [writer.submit(ClipJob(**{**{f: getattr(job, f) for f in job.__dataclass_fields__},
                                         "on_done": original})) for _ in range(5)]
    assert accepted.count(False) >= 3 and writer.dropped == accepted.count(False)
    gate.set()
    writer.close()


def test_a_clip_without_a_leading_keyframe_is_refused(street_clip: Path, tmp_path: Path) -> None:
    jobs: list[ClipJob] = []
    ring = PacketRing("cam-street", keep_s=4, on_ready=jobs.append)
    with av.open(str(street_clip)) as src:
        stream = src.streams.video[0]
        for i, packet in enumerate(src.demux(stream)):
            ring.on_packet(packet, stream)
            if i == 100:
                break
    ring.request_clip("inc-00000005", 2.0, 0.5, 0.5, tmp_path / "y.mp4")
    (job,) = jobs
    job.packets = job.packets[1:]
    with pytest.raises(EvidenceError, match=r"inc-00000005.*keyframe"):
        write_clip(job)


def test_clip_writer_counters_are_exported(street_clip: Path, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from evidence.clip import ClipWriterCollector

    writer = ClipWriter()
    registry = CollectorRegistry()
    registry.register(ClipWriterCollector(writer))
    ring = PacketRing("cam-street", keep_s=5, on_ready=writer.submit)
    _feed(street_clip, ring, {6.0: ("inc-00000006", 6.0, 1.0, 1.0, tmp_path / "m.mp4", None)})
    writer.close()
    text = generate_latest(registry).decode()
    assert "patrol_clips_written_total 1.0" in text and "patrol_clips_dropped_total 0.0" in text
    assert "patrol_clip_queue_depth 0.0" in text


def test_a_reconnect_starts_a_new_generation_and_hands_over_pending_clips(street_clip: Path,
                                                                          tmp_path: Path) -> None:
    jobs: list[ClipJob] = []
    ring = PacketRing("cam-street", keep_s=4, on_ready=jobs.append)
    with av.open(str(street_clip)) as src:
        stream = src.streams.video[0]
        for i, packet in enumerate(src.demux(stream)):
            ring.on_packet(packet, stream)
            if i == 200:
                break
    assert ring.request_clip("inc-00000007", 8.0, 2.0, 10.0, tmp_path / "r.mp4")
    generation = ring.generation
    with av.open(str(street_clip)) as src:  # the camera comes back: its clock starts again at 0
        stream = src.streams.video[0]
        for i, packet in enumerate(src.demux(stream)):
            ring.on_packet(packet, stream)
            if i == 60:
                break
    assert ring.generation == generation + 1
    (job,) = jobs
    assert job.truncated and job.packets[0].keyframe and job.packets[-1].time < 8.5
    assert ring.buffered_s < 3.0  # only the new connection's packets are held
