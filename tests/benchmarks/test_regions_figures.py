"""The regions on/off capacity figures `make bench` prints and writes (benchmarks/run.py)."""

from __future__ import annotations

from benchmarks.run import regions_summary, table


def trial(cameras: int, cpu: float) -> dict[str, object]:
    return {"capacity": cameras, "at_capacity": {"cameras": cameras, "sustained": True,
                                                 "cpu_ms_per_camera_second": cpu, "e2e": {"p95_ms": 300.0}}}


def test_summary_gives_both_capacities_their_ratio_and_the_added_cpu() -> None:
    summary = regions_summary(trial(40, 38.04), trial(28, 52.51))
    assert summary["capacity_off"] == 40 and summary["capacity_on"] == 28
    assert summary["capacity_ratio_on_vs_off"] == 0.7
    assert summary["cpu_ms_per_camera_second_off"] == 38.0 and summary["cpu_ms_per_camera_second_on"] == 52.5
    assert summary["added_cpu_ms_per_camera_second"] == 14.5


def test_nothing_sustained_is_no_ratio_and_no_cost() -> None:
    summary = regions_summary({"capacity": 0, "at_capacity": {}}, trial(4, 50.0))
    assert "capacity_ratio_on_vs_off" not in summary and "added_cpu_ms_per_camera_second" not in summary


def test_table_prints_both_figures() -> None:
    results = {"mode": "full", "machine": {"cpu": "x", "cores": 2, "load_avg_at_start": [0.0]},
               "stages": {}, "capacity": {"regions": regions_summary(trial(40, 38.0), trial(28, 52.5))}}
    assert ("zone-focused detection (1080p, 0.5 fps): capacity 40 cameras off, 28 on (0.7x); 38.0 vs 52.5 "
            "cpu-ms per camera-second") in table(results, [])


def test_the_summary_is_no_row_of_the_capacity_table() -> None:
    results = {"mode": "full", "machine": {"cpu": "x", "cores": 2, "load_avg_at_start": [0.0]}, "stages": {},
               "capacity": {"ours_1080p_0.5fps": trial(40, 38.0),
                            "regions": regions_summary(trial(40, 38.0), trial(28, 52.5))}}
    rows = [line.split()[0] for line in table(results, []).splitlines() if line.startswith("  ours") or
            line.startswith("  regions")]
    assert rows == ["ours_1080p_0.5fps"]
