"""One capacity trial: N cameras on one runner for a fixed window, in its own process.

``python -m benchmarks.trial SPEC_JSON`` loads the detector, starts the runner on the N stream
URLs (connections staggered over one GOP so keyframes do not all arrive at once, as with real,
unsynchronised cameras), discards a warm-up, measures a window, and prints one JSON summary line.
A process per trial keeps memory-per-camera honest and a crashed trial from taking the run down.

Frame-to-decision latency (``e2e``) is measured from when the frame was *captured*, estimated
per camera as ``pts + min(arrival - pts)`` over the trial: so a reader that falls behind the live
stream (frames waiting in socket or decoder buffers) shows up as growing latency, not hidden.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import asdict
from typing import Any

from benchmarks.records import Runner, RunnerState, TrialSpec, rss_mb
from benchmarks.runners import make_runner
from benchmarks.stats import lag_growth_s, percentiles


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as fh:
        parts = [float(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    return sum(parts) - idle, sum(parts)


def process_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def child_rss_mb(pid: int) -> float:
    """Resident memory of a live process, MiB; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            pages = int(fh.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def runner_pids(runner: Runner) -> list[int]:
    """Worker processes a runner started (their CPU and memory count as the runner's)."""
    pids = getattr(runner, "pids", None)
    return list(pids()) if callable(pids) else []


def total_cpu_s(runner: Runner) -> float:
    return process_cpu_s() + sum(child_cpu_s(pid) for pid in runner_pids(runner))


def total_rss_mb(runner: Runner) -> float:
    return rss_mb() + sum(child_rss_mb(pid) for pid in runner_pids(runner))


def summarise(spec: TrialSpec, state: RunnerState, window: tuple[float, float],
              extra: dict[str, Any]) -> dict[str, Any]:
    """Turn raw records into the trial's verdict and percentiles (pure apart from its inputs)."""
    offsets: dict[int, float] = {}
    for r in state.records:
        off = r.arrival - r.pts
        offsets[r.camera] = min(off, offsets.get(r.camera, off))
    t0, t1 = window
    recs = [r for r in state.records if t0 <= r.decided < t1]
    e2e = [r.decided - (r.pts + offsets[r.camera]) for r in recs]
    per_cam = [0] * spec.n
    for r in recs:
        per_cam[r.camera] += 1
    span = t1 - t0
    expected = spec.analysis_fps * span
    rate = sum(per_cam) / (spec.n * span) if spec.n else 0.0
    growth = lag_growth_s([r.decided for r in recs], e2e)
    lat = percentiles(e2e)
    reasons = []
    if state.errors:
        reasons.append(f"{len(state.errors)} camera(s) failed: {next(iter(state.errors.values()))}")
    if rate < 0.9 * spec.analysis_fps:
        reasons.append(f"analysed {rate:.3f} fps per camera < 90% of {spec.analysis_fps}")
    starving = sum(1 for c in per_cam if c < 0.5 * expected)
    if starving:
        reasons.append(f"{starving} camera(s) got < 50% of their analysed frames")
    if lat.get("n", 0) and lat["p95_ms"] > spec.e2e_budget_s * 1000:
        reasons.append(f"p95 frame-to-decision {lat['p95_ms']:.0f} ms > {spec.e2e_budget_s * 1000:.0f} ms")
    if growth > spec.max_lag_growth_s:
        reasons.append(f"lag grew {growth:.2f} s over the window (> {spec.max_lag_growth_s} s)")
    stage = {name: percentiles([getattr(r, name) for r in recs])
             for name in ("decode_s", "convert_s", "wait_s", "infer_s", "track_s", "rules_s")}
    batches = [r.batch for r in recs]
    return {
        "runner": spec.runner, "cameras": spec.n, "analysis_fps": spec.analysis_fps, "model": spec.model,
        "window_s": round(span, 2), "sustained": not reasons, "reasons": reasons,
        "analysed_fps_per_camera": round(rate, 4), "min_frames_per_camera": min(per_cam, default=0),
        "frames": len(recs), "dropped": state.dropped, "lag_growth_s": round(growth, 3),
        "e2e": lat, "stages": {k.removesuffix("_s"): v for k, v in stage.items()},
        "mean_batch": round(sum(batches) / len(batches), 2) if batches else 0.0,
        **extra,
    }


def wait_all_streaming(spec: TrialSpec, state: RunnerState) -> float | None:
    """Wait until every camera has had a frame analysed (connections, probing and first-frame costs
    are start-up, not steady state); give up after ``stream_timeout_s``. Seconds waited, or None."""
    start = time.monotonic()
    while time.monotonic() - start < spec.stream_timeout_s:
        with state.lock:
            seen = {r.camera for r in state.records}
        if len(seen) >= spec.n or len(seen) + len(state.errors) >= spec.n:
            return round(time.monotonic() - start, 2)
        time.sleep(0.25)
    return None


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Run one trial in this process and return its summary."""
    state = RunnerState()
    runner = make_runner(spec, state)
    rss_base = rss_mb()
    runner.start()
    base_of_children = getattr(runner, "rss_base_mb", None)
    if callable(base_of_children):  # worker processes: each one's memory before its cameras started
        rss_base += base_of_children()
    start = time.monotonic()
    streaming_s = wait_all_streaming(spec, state)
    time.sleep(spec.warmup_s)
    t0 = time.monotonic()
    cpu0, (busy0, total0) = total_cpu_s(runner), machine_busy()
    rss_peak = total_rss_mb(runner)
    while time.monotonic() < t0 + spec.window_s:
        time.sleep(0.5)
        rss_peak = max(rss_peak, total_rss_mb(runner))
    t1 = time.monotonic()
    cpu1, (busy1, total1) = total_cpu_s(runner), machine_busy()
    state.stop.set()
    runner.close()
    ncpu = os.cpu_count() or 1
    tick = os.sysconf("SC_CLK_TCK")
    ours = (cpu1 - cpu0) / (t1 - t0)
    machine = (busy1 - busy0) / tick / (t1 - t0)
    runner_extra = getattr(runner, "extra", None)
    extra = {
        **(runner_extra() if callable(runner_extra) else {}),
        "rss_base_mb": round(rss_base, 1), "rss_peak_mb": round(rss_peak, 1),
        "mem_per_camera_mb": round((rss_peak - rss_base) / max(1, spec.n), 2),
        "cpu_cores_used": round(ours, 3),
        "cpu_ms_per_camera_second": round(ours * 1000 / max(1, spec.n), 2),
        # what the CPU cost per camera would allow on the whole machine at 85 % use: an estimate that
        # other people's load cannot hide, reported beside (never instead of) the measured capacity
        "cpu_projected_cameras": round(0.85 * ncpu / (ours / max(1, spec.n)), 1) if ours > 0 else None,
        "machine_cores_busy": round(machine, 3),
        "other_load_cores": round(max(0.0, machine - ours), 3), "cores": ncpu,
        "startup_s": round(t0 - start, 2), "all_streaming_after_s": streaming_s, "busy_total_jiffies": total1 - total0,
    }
    return summarise(spec, state, (t0, t1), extra)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m benchmarks.trial SPEC_JSON", file=sys.stderr)
        return 2
    raw = json.loads(argv[0])
    raw["urls"] = tuple(raw["urls"])
    raw["providers"] = tuple(raw.get("providers", ()))
    spec = TrialSpec(**raw)
    result = run_trial(spec)
    print(json.dumps(result), flush=True)
    return 0


def spec_json(spec: TrialSpec) -> str:
    return json.dumps(asdict(spec))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
