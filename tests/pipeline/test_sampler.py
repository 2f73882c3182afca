"""Time-based sampling and the latest-frame slot: drops are counted, put never blocks."""

from __future__ import annotations

import threading
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.types import Frame
from pipeline.sampler import LatestFrameSlot, TimeSampler

IMAGE = np.zeros((4, 4, 3), np.uint8)


def frame(pts: float, camera: str = "cam") -> Frame:
    return Frame(camera_id=camera, pts=pts, wall_time=1_700_000_000.0 + pts, image=IMAGE)


def emitted(sampler: TimeSampler, pts_list: list[float]) -> list[float]:
    return [p for p in pts_list if sampler.due(p)]


@pytest.mark.parametrize(
    ("interval", "pts", "expected"),
    [
        # 25 fps to 1 fps: one frame per second of stream time
        (1.0, [i / 25 for i in range(101)], [0.0, 1.0, 2.0, 3.0, 4.0]),
        # irregular arrival: the first frame at or after each due time
        (1.0, [0.0, 0.3, 0.95, 1.01, 1.5, 2.2, 2.9, 3.05, 3.1], [0.0, 1.01, 2.2, 3.05]),
        # a gap of several seconds: sampling restarts from the frame after the gap, no burst
        (1.0, [0.0, 0.5, 1.0, 6.0, 6.2, 6.5, 7.0, 7.5, 8.0], [0.0, 1.0, 6.0, 7.0, 8.0]),
        # pts going backwards (new connection): the clock restarts
        (1.0, [10.0, 10.5, 11.0, 0.2, 0.4, 1.2], [10.0, 11.0, 0.2, 1.2]),
        # frames out of order by a frame or two (AVI with packed B-frames): never a restart, never backwards
        (0.5, [0.0, 0.16, 0.24, 0.2, 0.28, 0.36, 0.32, 0.4, 0.48, 0.44, 0.52, 0.6, 0.56, 0.64, 0.72, 0.68, 1.0, 0.96],
         [0.0, 0.52, 1.0]),
        # keyframes every 2 s, analysis every 2.5 s: the average rate is kept, not halved
        (2.5, [2.0 * i for i in range(11)], [0.0, 4.0, 6.0, 8.0, 12.0, 14.0, 16.0, 20.0]),
    ],
)
def test_time_sampler_table(interval: float, pts: list[float], expected: list[float]) -> None:
    assert emitted(TimeSampler(interval), pts) == expected


def test_time_sampler_never_counts_frames() -> None:
    """Same stream time, different frame rates -> same number of analysed frames."""
    at_30 = emitted(TimeSampler(0.5), [i / 30 for i in range(300)])
    at_7 = emitted(TimeSampler(0.5), [i / 7 for i in range(70)])
    assert len(at_30) == len(at_7) == 20


@given(st.lists(st.floats(min_value=0.001, max_value=3.0), min_size=1, max_size=200),
       st.floats(min_value=0.05, max_value=5.0))
def test_time_sampler_properties(gaps: list[float], interval: float) -> None:
    pts = list(np.cumsum(gaps))
    out = emitted(TimeSampler(interval), pts)
    assert out[0] == pts[0]
    # never two analysed frames closer than half an interval
    assert all(b - a >= interval / 2 - 1e-9 for a, b in pairwise(out))
    # never a due frame skipped: between two emitted frames no more than interval + one gap
    biggest_gap = max(gaps[1:], default=0.0)
    assert all(b - a <= interval + biggest_gap + 1e-9 for a, b in pairwise(out))


def test_time_sampler_rejects_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        TimeSampler(0)


def test_slot_keeps_latest_and_counts_drops() -> None:
    slot = LatestFrameSlot("cam")
    assert slot.take() is None
    for i in range(5):
        slot.put(frame(float(i)))
    got = slot.take()
    assert got is not None and got.pts == 4.0
    assert slot.dropped == 4 and slot.taken == 1 and slot.put_count == 5
    assert slot.take() is None
    slot.put(frame(9.0))
    assert slot.dropped == 4 and slot.pending()


def test_slot_put_never_blocks_without_consumer() -> None:
    slot = LatestFrameSlot("cam")
    done = threading.Event()

    def produce() -> None:
        for i in range(10_000):
            slot.put(frame(i * 0.04))
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    t.join(timeout=60)
    assert done.is_set(), "put blocked with nobody consuming"
    assert slot.dropped == 9_999


def test_slot_accounting_under_concurrency() -> None:
    """Every frame put is either taken, dropped or still pending; wakeup is set by put."""
    wake = threading.Event()
    slot = LatestFrameSlot("cam", wake)
    stop = threading.Event()
    taken: list[float] = []

    def consume() -> None:
        while not stop.is_set() or slot.pending():
            wake.wait(0.01)
            wake.clear()
            f = slot.take()
            if f is not None:
                taken.append(f.pts)

    c = threading.Thread(target=consume)
    c.start()
    for i in range(20_000):
        slot.put(frame(float(i)))
    stop.set()
    c.join(timeout=60)
    assert slot.put_count == 20_000
    assert len(taken) + slot.dropped == 20_000
    assert taken == sorted(taken) and taken[-1] == 19_999.0
