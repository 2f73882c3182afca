"""Small, pure statistics the benchmarks share: percentiles and the lag-growth test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles(values_s: Sequence[float]) -> dict[str, float | int]:
    """p50/p95/p99/mean/max in milliseconds and the sample count; NaN-free (empty gives count 0)."""
    arr = np.asarray(values_s, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99]) * 1000.0
    return {"n": int(arr.size), "p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3),
            "p99_ms": round(float(p99), 3), "mean_ms": round(float(arr.mean()) * 1000.0, 3),
            "max_ms": round(float(arr.max()) * 1000.0, 3)}


def lag_growth_s(times_s: Sequence[float], ages_s: Sequence[float]) -> float:
    """How much the age of analysed frames grew over the window: median age of the last third minus
    median age of the first third (seconds). A system that keeps up stays near 0; one that falls
    behind grows by roughly (window x deficit). Needs at least 6 samples, else 0."""
    if len(times_s) != len(ages_s):
        raise ValueError(f"lag_growth_s: {len(times_s)} times but {len(ages_s)} ages")
    if len(ages_s) < 6:
        return 0.0
    order = np.argsort(np.asarray(times_s, dtype=np.float64), kind="stable")
    ages = np.asarray(ages_s, dtype=np.float64)[order]
    third = len(ages) // 3
    return float(np.median(ages[-third:]) - np.median(ages[:third]))
