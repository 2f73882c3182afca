"""``python -m benchmarks.run [--smoke]``: stages, capacity, baseline; a table, JSON, the budget check.

Full run (``make bench``): per-stage latency for every registered model, reader CPU per camera,
then capacity searches over live RTSP streams from the local GStreamer server (one process per
trial): our pipeline (:class:`pipeline.worker.PatrolWorker`, as shipped: over as many worker
processes as ``patrol run`` would use, pipeline/shards.py) on 1080p at 0.5 analysed fps, the same
in one process, the same with keyframe-only decoding forced when the worker did not choose it, the OpenCV
baseline on the same 1080p streams, 704x576 at 0.5 fps and 1080p at 2 fps. About 11 minutes on 2
cores, plus the tuning benchmark (``benchmarks/bench_tune.py``) when present (``--skip-tune`` leaves
it out). Smoke run (CI, about a minute): the same code on a short 704x576 clip, few iterations,
one 2-camera trial per runner.

Results go to ``var/bench/bench-<UTC time>.json`` and ``var/bench/latest.json``; the exit status is
1 when a budget line fails (full run) — the failing lines are printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.analysis import BENCH_REGIONS
from benchmarks.budget import BUDGET_YAML, Verdict, check, load_budget
from benchmarks.capacity import run_trial_process, search
from benchmarks.media import REPO, ClipSpec, RtspServer, encode_clip
from benchmarks.stages import run_stages
from benchmarks.trial import TrialSpec
from core.errors import PatrolError

log = logging.getLogger("patrol.bench")

DEFAULT_MODEL = "yolox_nano_416"
ALL_MODELS = ("yolox_nano_416", "fastestdet_352", "nanodet_m_320", "nanodet_m_416", "picodet_s_320_coco",
              "picodet_s_416_coco")
CLIP_1080 = ClipSpec("street", 1920, 1080, duration_s=75, bitrate_kbps=4000)
CLIP_576 = ClipSpec("street", 704, 576, duration_s=75, bitrate_kbps=1000)
CLIP_SMOKE = ClipSpec("street", 704, 576, duration_s=20, bitrate_kbps=1000)


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import av
    import onnxruntime as ort

    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "onnxruntime": ort.__version__, "pyav": av.__version__, "ort_providers": ort.get_available_providers(),
            "host": platform.node()}


def run_tune(smoke: bool) -> dict[str, Any] | None:
    """The evaluation engineer's tuning benchmark (benchmarks/bench_tune.py), when present."""
    try:
        module = importlib.import_module("benchmarks.bench_tune")
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks.bench_tune":
            raise
        return None
    result = module.run(smoke)
    return result if isinstance(result, dict) else {"result": result}


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def trial_line(r: dict[str, Any]) -> str:
    e2e = r.get("e2e", {})
    verdict = "ok  " if r.get("sustained") else "FAIL"
    why = "" if r.get("sustained") else " — " + "; ".join(r.get("reasons", []))
    return (f"{verdict} {r.get('runner')} x{r.get('cameras')} @ {r.get('analysis_fps')} fps: "
            f"p95 e2e {e2e.get('p95_ms', float('nan')):.0f} ms, analysed {r.get('analysed_fps_per_camera', 0):.3f} "
            f"fps/cam, cpu {r.get('cpu_cores_used', 0):.2f} cores (others {r.get('other_load_cores', 0):.2f}), "
            f"{r.get('cpu_ms_per_camera_second', 0):.0f} cpu-ms per camera-second, "
            f"RTSP server {r.get('rtsp_server_cores', float('nan')):.2f} cores"
            f"{why}")


def server_metered(server: RtspServer) -> Callable[[TrialSpec], dict[str, Any]]:
    """A trial function that also notes the cores the RTSP server used during the trial."""
    def trial(spec: TrialSpec) -> dict[str, Any]:
        c0, t0 = server.cpu_seconds(), time.monotonic()
        result = run_trial_process(spec)
        c1, t1 = server.cpu_seconds(), time.monotonic()
        if c0 is not None and c1 is not None:
            result["rtsp_server_cores"] = round((c1 - c0) / (t1 - t0), 3)
        return result
    return trial


def run_capacity(urls: dict[str, str], *, smoke: bool, model: str, threads: int | None,
                 providers: tuple[str, ...], window_s: float = 12.0, trials: int | None = None,
                 trial: Callable[[TrialSpec], dict[str, Any]] = run_trial_process) -> dict[str, Any]:
    """Searches (full) or single 2-camera trials (smoke)."""
    out: dict[str, Any] = {}
    if smoke:
        base = TrialSpec(runner="ours", urls=(), model=model, warmup_s=4.0, window_s=6.0, stagger_s=1.0,
                         ort_threads=threads, providers=providers)
        for runner in ("ours", "baseline"):
            r = trial(replace(base, runner=runner, urls=(urls["smoke"],) * 2))
            progress(trial_line(r))
            out[f"{runner}_smoke"] = r
        r = trial(replace(base, urls=(urls["smoke"],) * 2, processes=2))  # what a large site runs
        progress(trial_line(r))
        out["ours_2processes_smoke"] = r
        r = trial(replace(base, urls=(urls["smoke"],) * 2, regions=list(BENCH_REGIONS)))  # zone-focused detection
        progress(trial_line(r))
        out["ours_regions_smoke"] = r
        return out
    base = TrialSpec(runner="ours", urls=(), model=model, warmup_s=4.0, window_s=window_s, stagger_s=2.0,
                     ort_threads=threads, providers=providers)
    trials_cap = trials
    plans = [  # key, runner, stream, analysis fps, worker processes (None: as shipped), first guess,
        #          most cameras, trials, detector.regions (None: the default, auto: no tile on the
        #          benchmark street's near zones)
        ("ours_1080p_0.5fps", "ours", "cam1080", 0.5, None, 32, 96, 5, None),
        ("baseline_1080p_0.5fps", "baseline", "cam1080", 0.5, None, 4, 48, 4, None),
        ("ours_1process_1080p_0.5fps", "ours", "cam1080", 0.5, 1, 32, 96, 3, None),
        ("ours_576p_0.5fps", "ours", "cam576", 0.5, None, 32, 96, 4, None),
        ("ours_1080p_2fps", "ours", "cam1080", 2.0, None, 4, 64, 2, None),
        ("ours_regions_1080p_0.5fps", "ours", "cam1080", 0.5, None, 24, 96, 4, list(BENCH_REGIONS)),
    ]
    for key, runner, stream, fps, processes, first, most, budget, regions in plans:
        trials = min(budget, trials_cap) if trials_cap else budget
        progress(f"capacity {key}: searching from {first} cameras")
        out[key] = search(replace(base, runner=runner, analysis_fps=fps, processes=processes, regions=regions),
                          urls[stream],
                          first, most, trials, trial=trial, on_trial=lambda r: progress(trial_line(r)))
        progress(f"capacity {key}: {out[key]['capacity']}")
        if key == "ours_1080p_0.5fps" and not any(t.get("keyframe_only_cameras") for t in out[key]["trials"]):
            # the pipeline chose to decode every frame although 0.5 fps needs only keyframes:
            # measure the worker with keyframe-only decoding forced and one ORT thread (the two
            # one-line fixes the stage figures point at), so the report can say what they give
            kf = "ours_keyframe_only_forced_threads1_1080p_0.5fps"
            progress(f"capacity {kf}: the worker did not pick keyframe-only decoding; measuring it forced, "
                     f"with ORT 1 thread")
            out[kf] = search(replace(base, runner="ours", analysis_fps=fps, keyframe_only=True, ort_threads=1),
                             urls[stream],
                             first, most, min(trials, 3), trial=trial, on_trial=lambda r: progress(trial_line(r)))
            progress(f"capacity {kf}: {out[kf]['capacity']}")
    ours, baseline = out["ours_1080p_0.5fps"]["capacity"], out["baseline_1080p_0.5fps"]["capacity"]
    out["ratio_vs_baseline"] = round(ours / baseline, 2) if baseline else None
    out["regions"] = regions_summary(out["ours_1080p_0.5fps"], out["ours_regions_1080p_0.5fps"])
    for key in ("ours_keyframe_only_forced_threads1_1080p_0.5fps", "ours_1process_1080p_0.5fps"):
        if key in out and baseline:
            out[f"ratio_{key.removesuffix('_1080p_0.5fps')}_vs_baseline"] = round(out[key]["capacity"] / baseline, 2)
    return out


def regions_summary(off: dict[str, Any], on: dict[str, Any]) -> dict[str, Any]:
    """Capacity and CPU per camera-second at 1080p, 0.5 fps, with zone-focused detection off (the
    default on the benchmark street: no tile) and on (:data:`benchmarks.analysis.BENCH_REGIONS`)."""
    def cpu(r: dict[str, Any]) -> float | None:
        at = r.get("at_capacity", {})
        value = at.get("cpu_ms_per_camera_second")
        return round(float(value), 1) if value is not None else None

    summary: dict[str, Any] = {"capacity_off": off["capacity"], "capacity_on": on["capacity"],
                               "cpu_ms_per_camera_second_off": cpu(off), "cpu_ms_per_camera_second_on": cpu(on),
                               "on": list(BENCH_REGIONS)}
    if off["capacity"]:
        summary["capacity_ratio_on_vs_off"] = round(on["capacity"] / off["capacity"], 2)
    if summary["cpu_ms_per_camera_second_off"] and summary["cpu_ms_per_camera_second_on"]:
        summary["added_cpu_ms_per_camera_second"] = round(
            summary["cpu_ms_per_camera_second_on"] - summary["cpu_ms_per_camera_second_off"], 1)
    return summary


# --- the table ----------------------------------------------------------------------------------

def _row(name: str, p: dict[str, Any] | None) -> str:
    if not p or "p50_ms" not in p:
        why = (p or {}).get("error", "not measured")
        return f"  {name:<44} {why}"
    return f"  {name:<44} {p['p50_ms']:>9.1f} {p['p95_ms']:>9.1f} {p['p99_ms']:>9.1f}   n={p['n']}"


def table(results: dict[str, Any], verdicts: list[Verdict]) -> str:
    st = results.get("stages", {})
    lines = [f"Bright Patrol benchmark ({results['mode']}) on {results['machine']['cpu']} x"
             f"{results['machine']['cores']} cores, load at start {results['machine']['load_avg_at_start']}",
             "", f"  {'stage (ms)':<44} {'p50':>9} {'p95':>9} {'p99':>9}"]
    dec, conv = st.get("decode", {}), st.get("convert", {})
    lines += [_row("decode: every frame", dec.get("every_frame")), _row("decode: keyframe", dec.get("keyframe"))]
    rc = st.get("reader_cpu", {})
    for k in ("source_as_shipped", "source_keyframe_only_forced", "keyframes_to_model_size"):
        if k in rc:
            lines.append(f"  {'reader CPU @ 0.5 fps: ' + k:<44} {rc[k]['cpu_ms_per_camera_s']:>9.1f} cpu-ms per "
                         f"camera-second (keyframe-only: {rc[k]['keyframe_only']})")
    for k in ("full_bgr", "full_bgr_then_cv2_resize", "reformat_to_model_size", "reformat_to_model_size_bilinear"):
        lines.append(_row(f"convert: {k}", conv.get(k)))
    for name, r in st.get("inference", {}).items():
        lines.append(_row(f"inference: {name} batch 1", r.get("batch1")))
        lines.append(_row(f"inference: {name} batch 8, per frame", r.get("batch8_per_frame")))
    reg = st.get("regions", {})
    if "on" in reg:
        lines.append(f"  {'detection, regions off / on (' + str(len(reg['tiles'])) + ' tiles), native':<44} "
                     f"{reg['off']['cpu_ms_per_frame']:>9.1f} {reg['on']['cpu_ms_per_frame']:>9.1f} cpu-ms per "
                     f"frame: +{reg['added_cpu_ms_per_camera_s']:.1f} cpu-ms per camera-second at {reg['fps']} fps")
    for k, v in st.get("ort_threads", {}).items():
        lines.append(_row(f"bare model call, ORT {k}", v) + f"   cpu {v.get('cpu_ms_per_frame', 0):.1f} ms/frame")
    for where in ("analysis_model_size", "analysis_native"):
        for k, v in st.get(where, {}).items():
            lines.append(_row(f"{k} ({where.removeprefix('analysis_').replace('_', ' ')})", v))
    for k, v in st.get("publish", {}).items():
        lines.append(_row(f"publish: {k}", v))
    for k, v in st.get("e2e_unloaded", {}).items():
        lines.append(_row(f"frame-to-decision unloaded: {k}", v))
    model = st.get("cpu_model", {})
    if model:
        lines += ["", f"  CPU per camera at {model['fps']} fps from the stage figures (analysis "
                      f"{model['analysis_ms_per_frame']:.0f} ms/frame) -> cameras in 85 % of the cores:"]
        for k, v in model.items():
            if isinstance(v, dict):
                lines.append(f"    {k:<50} {v['cpu_ms_per_camera_s']:>7.1f} cpu-ms/s -> {v['cameras']:>6.1f} cameras")
    cap = results.get("capacity", {})
    if cap:
        lines += ["", f"  {'capacity (ms; MB per camera; cores used)':<42} {'cameras':>8} {'procs':>6} {'p50 e2e':>8} "
                      f"{'p95 e2e':>8} {'p99 e2e':>8} {'MB/cam':>7} {'cores':>6} {'cpu-projected':>14}"]
        for key, r in cap.items():
            if not isinstance(r, dict) or key == "regions":  # the regions summary has its own line below
                continue
            at = r.get("at_capacity", r)
            n = r.get("capacity", at.get("cameras") if at.get("sustained") else 0)
            e = at.get("e2e", {})
            flag = "" if "capacity" in r or at.get("sustained") else "  (not sustained)"
            projected = at.get("cpu_projected_cameras") if at.get("sustained") else None
            lines.append(f"  {key:<42} {n!s:>8} {at.get('processes', 1)!s:>6} {e.get('p50_ms', float('nan')):>8.0f} "
                         f"{e.get('p95_ms', float('nan')):>8.0f} {e.get('p99_ms', float('nan')):>8.0f} "
                         f"{at.get('mem_per_camera_mb', float('nan')):>7.1f} "
                         f"{at.get('cpu_cores_used', float('nan')):>6.2f} "
                         f"{'-' if projected is None else format(projected, '.0f'):>14}{flag}")
        if "ratio_vs_baseline" in cap:
            lines.append(f"  our capacity / baseline capacity (1080p, 0.5 fps): {cap['ratio_vs_baseline']}")
        reg = cap.get("regions")
        if isinstance(reg, dict):
            lines.append(f"  zone-focused detection (1080p, 0.5 fps): capacity {reg['capacity_off']} cameras off, "
                         f"{reg['capacity_on']} on ({reg.get('capacity_ratio_on_vs_off', '-')}x); "
                         f"{reg['cpu_ms_per_camera_second_off']} vs {reg['cpu_ms_per_camera_second_on']} cpu-ms per "
                         f"camera-second at the sustained level")
        for key, value in cap.items():
            if key.startswith("ratio_") and key != "ratio_vs_baseline":
                lines.append(f"  {key.removeprefix('ratio_').replace('_', ' ')}: {value}")
        lines.append("  cpu-projected: cameras the measured CPU cost per camera would allow at 85 % of all cores "
                     "at the sustained level (an estimate; capacity is what was sustained)")
    tune = results.get("tune")
    if isinstance(tune, dict):
        shown = {k: tune[k] for k in ("settings", "sweep_s", "ms_per_setting", "setup_s") if k in tune}
        lines += ["", f"  tuning sweep (benchmarks/bench_tune.py): {shown}"]
    lines += ["", "budget (benchmarks/budget.yaml):"] + [f"  {v.describe()}" for v in verdicts]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="short CI version: seconds, not minutes")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench", help="where JSON results go")
    parser.add_argument("--models", default=None, help="comma-separated registered models (default: all)")
    parser.add_argument("--skip-capacity", action="store_true", help="stage latencies only")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--provider", action="append", default=[],
                        help="execution provider to prefer (e.g. CUDAExecutionProvider); CPU is the fallback")
    parser.add_argument("--budget", type=Path, default=BUDGET_YAML)
    parser.add_argument("--skip-tune", action="store_true", help="leave out benchmarks/bench_tune.py")
    parser.add_argument("--window", type=float, default=12.0, help="measured seconds per capacity trial")
    parser.add_argument("--trials", type=int, default=None, help="at most this many trials per capacity search")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    try:
        budget = load_budget(args.budget)
        models = [m for m in (args.models.split(",") if args.models else ALL_MODELS) if m]
        if args.smoke and not args.models:
            models = [DEFAULT_MODEL, "fastestdet_352"]
        results = run(args, models)
    except PatrolError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    verdicts = check(results, budget)
    results["budget"] = [{"name": v.line.name, "path": v.line.path, "value": v.value, "status": v.status,
                          "max": v.line.max, "min": v.line.min} for v in verdicts]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"bench-{'smoke-' if args.smoke else ''}{stamp}.json"
    text = json.dumps(results, indent=1, default=str)
    (args.out / name).write_text(text)
    (args.out / ("latest-smoke.json" if args.smoke else "latest.json")).write_text(text)
    print(table(results, verdicts))
    print(f"\nresults: {args.out / name}")
    failed = [v for v in verdicts if v.status == "FAIL"]
    if failed:
        print(f"{len(failed)} budget line(s) failed:", *(f"  {v.describe()}" for v in failed), sep="\n")
    return 1 if failed and not args.smoke else 0


def run(args: argparse.Namespace, models: list[str]) -> dict[str, Any]:
    started = time.time()
    media = REPO / "var" / "bench" / "media"
    providers = tuple(args.provider)
    results: dict[str, Any] = {"mode": "smoke" if args.smoke else "full", "machine": machine_info(),
                               "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "models": models}
    progress("encoding benchmark clips (once; kept in var/bench/media)")
    clips = {"smoke": encode_clip(CLIP_SMOKE, media)} if args.smoke else \
        {"cam1080": encode_clip(CLIP_1080, media), "cam576": encode_clip(CLIP_576, media)}
    stage_clip = clips["smoke"] if args.smoke else clips["cam1080"]
    progress(f"stage latencies on {stage_clip.name}, models {', '.join(models)}")
    results["stages"] = run_stages(stage_clip, models, smoke=args.smoke, threads=args.threads,
                                   providers=list(providers) or None)
    if not args.skip_capacity:
        with RtspServer(clips) as server:
            urls = {name: server.url(name) for name in clips}
            results["capacity"] = run_capacity(urls, smoke=args.smoke, model=models[0], threads=args.threads,
                                               providers=providers, window_s=args.window, trials=args.trials,
                                               trial=server_metered(server))
    if not args.skip_tune:
        progress("tuning benchmark (benchmarks/bench_tune.py, when present)")
    tune = None if args.skip_tune else run_tune(args.smoke)
    if tune is not None:
        results["tune"] = tune
    results["duration_s"] = round(time.time() - started, 1)
    return results


if __name__ == "__main__":
    sys.exit(main())
