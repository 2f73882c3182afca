"""Capacity search: the most cameras a runner sustains, one isolated trial process per load level.

Sustained means (see :func:`benchmarks.trial.summarise`): every camera connected, >= 90 % of the
analysis rate delivered, no camera starved, p95 frame-to-decision within budget, and the age of
analysed frames not growing over the window. The search doubles from a guess until a level fails,
then bisects between the best pass and the worst fail, within a trial budget.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from benchmarks.trial import TrialSpec, spec_json

log = logging.getLogger("patrol.bench")


def run_trial_process(spec: TrialSpec) -> dict[str, Any]:
    """Run one trial in a fresh interpreter; a crash or hang becomes a failed trial, not an exception."""
    limit = spec.warmup_s + spec.window_s + spec.stream_timeout_s + 90
    cmd = [sys.executable, "-m", "benchmarks.trial", spec_json(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return failed(spec, f"trial did not finish within {limit:.0f} s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return failed(spec, f"trial process exited {proc.returncode}: {' | '.join(tail)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def failed(spec: TrialSpec, reason: str) -> dict[str, Any]:
    return {"runner": spec.runner, "cameras": spec.n, "analysis_fps": spec.analysis_fps, "sustained": False,
            "reasons": [reason], "e2e": {"n": 0}}


def search(base: TrialSpec, url: str, start: int, max_cameras: int, max_trials: int,
           trial: Callable[[TrialSpec], dict[str, Any]] = run_trial_process,
           on_trial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Highest sustained camera count found for ``base`` (with ``urls`` replaced by N x ``url``)."""
    if start < 1 or max_cameras < start or max_trials < 1:
        raise ValueError(f"search: need 1 <= start <= max_cameras and max_trials >= 1, "
                         f"got start={start} max_cameras={max_cameras} max_trials={max_trials}")
    trials: dict[int, dict[str, Any]] = {}
    best, worst = 0, None  # highest passing, lowest failing
    n = start
    while len(trials) < max_trials and n not in trials:
        result = trial(replace(base, urls=(url,) * n))
        trials[n] = result
        if on_trial is not None:
            on_trial(result)
        if result.get("sustained"):
            best = max(best, n)
        else:
            worst = n if worst is None else min(worst, n)
        if worst is None:
            if n >= max_cameras:
                break
            n = min(max_cameras, n * 2)
        else:
            if worst - best <= max(1, best // 8):
                break
            n = (best + worst) // 2 if best else max(1, worst // 2)
    at_best = trials.get(best, {})
    return {
        "capacity": best, "limit_reached": best >= max_cameras, "first_failure": worst,
        "at_capacity": at_best, "trials": [trials[k] for k in sorted(trials)],
    }
