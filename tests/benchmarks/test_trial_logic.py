"""Pure parts of the capacity benchmark: percentiles, the lag test, the trial verdict, the search,
the runner names and the baseline's sampling. No streams, no timing."""

from __future__ import annotations

import pytest

from benchmarks.capacity import search
from benchmarks.records import FrameRecord, RunnerState, TrialSpec
from benchmarks.runners import RUNNERS, make_runner
from benchmarks.stats import lag_growth_s, percentiles
from benchmarks.trial import summarise
from pipeline.sampler import TimeSampler


def test_percentiles_in_ms() -> None:
    p = percentiles([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert p["n"] == 100
    assert p["p50_ms"] == pytest.approx(50.5)
    assert p["p95_ms"] == pytest.approx(95.05)
    assert p["max_ms"] == pytest.approx(100.0)
    assert percentiles([]) == {"n": 0}


def test_lag_growth_flat_and_growing() -> None:
    times = [float(t) for t in range(30)]
    assert lag_growth_s(times, [0.2] * 30) == pytest.approx(0.0)
    # falling behind by 0.1 s per second: last third's median minus first third's is 2 s
    assert lag_growth_s(times, [0.1 * t for t in times]) == pytest.approx(2.0)
    assert lag_growth_s(times[:4], [9.0, 0, 0, 0]) == 0.0  # too few samples to judge
    with pytest.raises(ValueError, match="3 times but 2 ages"):
        lag_growth_s([1.0, 2.0, 3.0], [0.0, 0.0])


def _state(n_cams: int, seconds: int, fps: float, lag_per_s: float = 0.0, skip: set[int] | None = None,
           base_latency: float = 0.15) -> RunnerState:
    """Synthetic records: camera c's frame at pts p arrives at 100 + p (+ growing lag) and is
    decided ``base_latency`` later."""
    state = RunnerState()
    step = 1 / fps
    for c in range(n_cams):
        if skip and c in skip:
            continue
        k = 0
        while k * step < seconds:
            pts = k * step
            arrival = 100.0 + pts + lag_per_s * pts
            state.records.append(FrameRecord(camera=c, pts=pts, arrival=arrival, decided=arrival + base_latency))
            k += 1
    return state


def _spec(n: int, fps: float = 0.5) -> TrialSpec:
    return TrialSpec(runner="ours", urls=("rtsp://x",) * n, analysis_fps=fps)


def test_summary_of_a_runner_that_keeps_up() -> None:
    out = summarise(_spec(4), _state(4, 40, 0.5), (110.0, 130.0), {})
    assert out["sustained"], out["reasons"]
    assert out["e2e"]["p95_ms"] == pytest.approx(150.0)
    assert out["analysed_fps_per_camera"] == pytest.approx(0.5)
    assert abs(out["lag_growth_s"]) < 1e-9


def test_summary_of_a_runner_falling_behind() -> None:
    # 20 % behind real time: frames are ever older when analysed
    out = summarise(_spec(4), _state(4, 60, 0.5, lag_per_s=0.2), (110.0, 140.0), {})
    assert not out["sustained"]
    assert any("lag grew" in r for r in out["reasons"])
    assert any("p95 frame-to-decision" in r for r in out["reasons"])


def test_summary_flags_starved_and_failed_cameras() -> None:
    state = _state(4, 40, 0.5, skip={3})
    state.errors[3] = "open failed: connection refused"
    out = summarise(_spec(4), state, (110.0, 130.0), {})
    assert not out["sustained"]
    assert any("1 camera(s) failed: open failed" in r for r in out["reasons"])
    assert any("got < 50% of their analysed frames" in r for r in out["reasons"])
    assert any("< 90% of 0.5" in r for r in out["reasons"])


@pytest.mark.parametrize(("true_capacity", "start", "most", "trials", "expected"), [
    (40, 32, 96, 6, 40),   # 32 ok, 64 fail, 48 fail, 40 ok, 44 fail, 42 fail -> 40
    (40, 32, 96, 4, 40),   # 32 ok, 64 fail, 48 fail, 40 ok: stops within its trial budget
    (200, 32, 96, 6, 96),  # never fails: reports the most it tried
    (0, 4, 48, 6, 0),      # even one camera fails
    (5, 4, 48, 6, 5),      # 4 ok, 8 fail, 6 fail, 5 ok
])
def test_search_brackets_the_capacity(true_capacity: int, start: int, most: int, trials: int,
                                      expected: int) -> None:
    tried: list[int] = []

    def fake_trial(spec: TrialSpec) -> dict[str, object]:
        tried.append(spec.n)
        return {"cameras": spec.n, "sustained": spec.n <= true_capacity}

    out = search(_spec(1), "rtsp://x", start, most, trials, trial=fake_trial)
    assert out["capacity"] == expected
    assert len(tried) <= trials
    assert len(set(tried)) == len(tried)
    assert out["limit_reached"] == (expected >= most)


def test_unknown_runner_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"unknown runner 'fastpath'; expected one of \('ours', 'baseline'\)"):
        make_runner(TrialSpec(runner="fastpath", urls=("rtsp://x",)), RunnerState())
    assert RUNNERS == ("ours", "baseline")


def test_baseline_sampling_takes_the_frame_whose_position_reads_a_millisecond_early() -> None:
    """OpenCV positions are whole milliseconds, so at 25 fps the frame for the 2 s slot can read
    1.999 s. The baseline's tolerance lets it serve the slot; without it the next frame, 40 ms later,
    would be analysed instead (same rate, but the baseline's latency would carry 40 ms of our making)."""
    from benchmarks.baseline import BASELINE_TOLERANCE_S

    positions = [max(0.0, k * 0.040 - 0.001) for k in range(25 * 10)]  # 0, 0.039, ..., 1.999, 2.039, ...
    strict, tolerant = TimeSampler(2.0), TimeSampler(2.0, tolerance_s=BASELINE_TOLERANCE_S)
    assert [round(p, 3) for p in positions if tolerant.due(p)] == [0.0, 1.999, 3.999, 5.999, 7.999]
    assert [round(p, 3) for p in positions if strict.due(p)] == [0.0, 2.039, 4.039, 6.039, 8.039]


def test_bench_site_is_a_valid_config_with_every_zone_type() -> None:
    from benchmarks.worker_runner import bench_site

    site = bench_site(TrialSpec(runner="ours", urls=("rtsp://127.0.0.1:1/a",) * 3, analysis_fps=2.0))
    assert [c.id for c in site.cameras] == ["cam0", "cam1", "cam2"]
    assert {z.type for z in site.cameras[0].zones} == {"no_parking", "no_vending", "keep_clear"}
    assert all(c.analysis_fps == 2.0 and c.detector.model == "yolox_nano_416" for c in site.cameras)


def test_arrival_log_matches_frames_by_pts_and_stays_bounded() -> None:
    from fractions import Fraction

    from benchmarks.worker_runner import ARRIVALS_KEPT, ArrivalLog

    class Packet:
        def __init__(self, pts: int | None) -> None:
            self.pts, self.time_base = pts, Fraction(1, 90_000)

    log = ArrivalLog()
    log.on_packet(Packet(None), None)
    for k in range(ARRIVALS_KEPT + 10):
        log.on_packet(Packet(k * 3600), None)  # 25 fps on the 90 kHz RTP clock
    assert log.arrival(0.0) is None  # the oldest were dropped
    last = (ARRIVALS_KEPT + 9) * 3600 / 90_000
    assert log.arrival(last) is not None
    assert log.arrival(last + 0.5) is None
