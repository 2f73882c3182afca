"""The committed budget parses, and the check says ok / FAIL / skipped per line."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.budget import BUDGET_YAML, BudgetLine, check, load_budget, lookup
from core.errors import ConfigError


def test_committed_budget_loads_and_covers_every_stage_and_capacity() -> None:
    lines = load_budget(BUDGET_YAML)
    paths = {line.path for line in lines}
    for needed in ("stages.decode.keyframe.p95_ms", "stages.convert.reformat_to_model_size.p95_ms",
                   "stages.inference.yolox_nano_416.batch1.p95_ms", "stages.analysis_model_size.tracking.p95_ms",
                   "stages.publish.mqtt_qos1.p95_ms", "capacity.ours_1080p_0.5fps.capacity",
                   "capacity.ratio_vs_baseline", "capacity.ours_1080p_0.5fps.at_capacity.e2e.p95_ms"):
        assert needed in paths
    target = {line.path: line for line in lines}
    assert target["capacity.ours_1080p_0.5fps.capacity"].min == 32
    assert target["capacity.ratio_vs_baseline"].min == 5
    assert target["capacity.ours_1080p_0.5fps.at_capacity.e2e.p95_ms"].max == 1000


@pytest.mark.parametrize(("path", "expected"), [
    ("capacity.ours_1080p_0.5fps.capacity", 40.0),      # key with a dot in it
    ("capacity.ours_1080p_0.5fps.at_capacity.e2e.p95_ms", 512.5),
    ("capacity.ours_1080p_2fps.capacity", None),         # missing
    ("capacity.ours_1080p_0.5fps.limit_reached", None),  # a bool is not a measurement
    ("capacity", None),                                  # not a number
])
def test_lookup_follows_dotted_paths(path: str, expected: float | None) -> None:
    results = {"capacity": {"ours_1080p_0.5fps": {"capacity": 40, "limit_reached": False,
                                                  "at_capacity": {"e2e": {"p95_ms": 512.5}}}}}
    assert lookup(results, path) == expected


def test_check_reports_each_line() -> None:
    lines = [BudgetLine("lat", "a.p95_ms", max=100), BudgetLine("cap", "b.n", min=32),
             BudgetLine("slow", "c.p95_ms", max=10), BudgetLine("few", "d.n", min=5),
             BudgetLine("gone", "e.n", min=1)]
    results = {"a": {"p95_ms": 100.0}, "b": {"n": 32}, "c": {"p95_ms": 10.5}, "d": {"n": 4}}
    verdicts = check(results, lines)
    assert [v.status for v in verdicts] == ["ok", "ok", "FAIL", "FAIL", "skipped"]
    assert "slow: 10.5 (budget <= 10; c.p95_ms)" in verdicts[2].describe()
    assert "not measured" in verdicts[4].describe()


@pytest.mark.parametrize(("text", "problem"), [
    ("lines: [{name: x, path: a.b}]", "lines[0] (x): needs exactly one numeric 'max' or 'min'"),
    ("lines: [{name: x, path: a.b, max: 1, min: 0}]", "needs exactly one"),
    ("lines: [{name: x, path: a.b, max: fast}]", "needs exactly one"),
    ("lines: [{name: x, path: a.b, max: 1, unit: ms}]", "lines[0]: expected keys"),
    ("just text", "expected a mapping with a 'lines' list"),
    ("lines: [{name: x", "cannot read budget"),
])
def test_bad_budget_names_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "budget.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_budget(path)
    assert str(path) in str(err.value)
    assert problem in str(err.value)
