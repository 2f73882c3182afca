"""Benchmark of ``patrol tune``: a parameter sweep over the cached shared clips.

``run(smoke) -> dict`` (called by ``python -m benchmarks.run``) or ``python -m benchmarks.bench_tune
[--smoke]`` (prints the JSON). Full: every labelled shared clip (labels/*.yaml) and ``labels/grids/shared.yaml``
(per camera, as `patrol tune` runs it: limits held, 1,890 settings over 7 cameras); smoke: the
car-detection clip and a 6-setting grid.

Untimed set-up: the detection cache is filled (the detector runs only where the cache is missing or
refused) and each clip's frames are decoded once. Then one warm-up sweep and ``iterations`` measured
sweeps, each with a fresh :class:`~evaluation.replay.Replayer` (nothing recorded carries over
between sweeps), so every measured sweep pays for tracking, the background models and the rules.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "labels" / "grids" / "shared.yaml"
SMOKE_GRID = {"no_parking:still_tolerance": [0.1, 0.25, 0.5], "keep_clear:min_area": [0.002, 0.004]}
SMOKE_LABELS = ("car_detection_lot.yaml",)


def run(smoke: bool = False) -> dict[str, Any]:
    from core.assets import default_cache_dir
    from evaluation.labels import load_labels
    from evaluation.replay import Replayer, default_detector_factory
    from evaluation.tune import combined, load_grid, meets, parse_grid, tune_per_camera

    label_paths = ([REPO / "labels" / n for n in SMOKE_LABELS] if smoke
                   else sorted((REPO / "labels").glob("*.yaml")))
    labels = [load_labels(p) for p in label_paths]
    params = parse_grid(SMOKE_GRID, "smoke grid") if smoke else load_grid(GRID)
    cache_dir = default_cache_dir() / "detections"
    iterations = 1 if smoke else 3

    started = time.perf_counter()
    loader = Replayer(cache_dir, default_detector_factory)
    loaded = {str(lab.path): loader.load(lab) for lab in labels}
    setup_s = time.perf_counter() - started

    tune_per_camera(labels, params, loader.fresh())  # warm-up: imports, first allocations
    times = []
    cpu = []
    replays = 0
    result: Any = None
    for _ in range(iterations):
        r = loader.fresh()  # frames and detections are set-up; tracks and backgrounds are not
        t0, c0 = time.perf_counter(), time.process_time()
        result = tune_per_camera(labels, params, r)  # what `patrol tune` runs: per camera, limits held
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        replays = r.replays
    trials = [x for t in result for x in t.trials]
    default, chosen = combined([t.default for t in result]), combined([t.chosen for t in result])
    median = statistics.median(times)
    return {
        "benchmark": "tune",
        "smoke": smoke,
        "clips": [lab.name for lab in labels],
        "frames": sum(len(loaded[str(lab.path)].clip) for lab in labels),
        "settings": len(trials),
        "zone_replays_per_sweep": replays,
        "setup_s": round(setup_s, 2),
        "detected_clips": loader.detected,
        "sweep_s": {"runs": [round(t, 2) for t in times], "median": round(median, 2)},
        "sweep_cpu_s": {"runs": [round(t, 2) for t in cpu], "median": round(statistics.median(cpu), 2)},
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "ms_per_setting": round(1000 * median / max(1, len(trials)), 2),
        "default": default.summary(),
        "chosen": chosen.summary(),
        "chosen_at_least_default_f1": all(t.chosen.overall.f1 >= t.default.overall.f1 for t in result),
        "objective_met": all(meets("f1", t.chosen) for t in result),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one clip, a small grid, one iteration")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.smoke), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
