"""benchmarks/bench_tune.py runs (smoke) and reports what the budget reads."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow]


def test_bench_tune_smoke() -> None:
    from benchmarks.bench_tune import run

    result = run(smoke=True)
    assert result["benchmark"] == "tune" and result["smoke"] is True
    assert result["settings"] == 6 and result["frames"] > 0
    assert len(result["sweep_s"]["runs"]) == 1 and result["sweep_s"]["median"] > 0
    assert result["zone_replays_per_sweep"] <= 1 + 6 * 2  # shared work: fewer replays than settings x zones
    assert result["chosen_at_least_default_f1"] is True
