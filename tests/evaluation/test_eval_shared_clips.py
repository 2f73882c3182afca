"""`patrol eval` and `patrol tune` on the label files of the shared clips (labels/*.yaml), with the real
detector (its output cached in $PATROL_CACHE/detections, so only the first run pays for it).

The figures are printed (run with ``-s`` to see them). What is asserted is what the labels say
must hold and what the tuning must guarantee: the chosen setting, re-scored by a plain replay
(no recorded tracks, no background playback, no zone-by-zone split), scores what the sweep
claimed and at least as well as the configs as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.assets import default_cache_dir
from evaluation.labels import ClipLabels, load_labels
from evaluation.matching import OVERALL, match_clip, score
from evaluation.replay import Replayer, default_detector_factory
from evaluation.tune import apply_setting, choose, load_grid, sweep
from patrol.cli import main

REPO = Path(__file__).resolve().parents[2]
LABELS = sorted((REPO / "labels").glob("*.yaml"))
GRID = REPO / "labels" / "grids" / "shared.yaml"

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    return default_cache_dir() / "detections"


@pytest.fixture(scope="module")
def clips() -> list[ClipLabels]:
    return [load_labels(p) for p in LABELS]


def test_label_files_cover_the_shared_clips(clips: list[ClipLabels]) -> None:
    names = {c.clip.name for c in clips}
    assert {"vehicle_counting_input_video.mp4", "car-detection.mp4", "Candela_m1.10.mp4",
            "HallAndMonitor.mp4", "pedestrian_survaillance.mp4", "evadb_traffic_10fps.mp4",
            "courtyard_kam1.mp4"} <= names
    for c in clips:
        text = c.path.read_text(encoding="utf-8")
        assert text.lstrip().startswith("#"), f"{c.path}: explain the labels in a comment"
        assert all(e.note for e in c.expected), f"{c.path}: every expectation needs a note"
        assert all(e.where for e in c.expected), f"{c.path}: every expectation names its place (where)"
        assert c.frame_size is not None


def test_patrol_eval_on_shared_clips(tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "eval.json"
    rc = main(["eval", *map(str, LABELS), "--cache-dir", str(cache_dir), "--json", str(out_json),
               "--report", str(tmp_path / "report")])
    captured = capsys.readouterr()
    with capsys.disabled():
        print("\n" + captured.out)
    assert rc == 0
    data = json.loads(out_json.read_text())
    scores = data["scores"]
    assert {"illegal_parking", "obstruction", OVERALL} <= set(scores)
    for row in scores.values():  # the JSON agrees with itself and with the table
        assert row["tp"] + row["fn"] >= row["tp"]
        assert f"{row['tp']:>4} {row['fp']:>4} {row['fn']:>4}" in captured.out
    clips = {c["clip"]: c for c in data["clips"]}
    # what the labels say must hold with the shipped configs:
    for quiet in ("car_detection_lot", "pedestrian_walkway", "evadb_street"):
        assert clips[quiet]["false_positives"] == [], f"{quiet}: traffic and passers-by must not fire"
    assert any(m["type"] == "illegal_parking" for m in clips["vehicle_counting_kerb"]["matches"]), \
        "the kerb-parked cars must be reported"
    assert scores["obstruction"]["tp"] >= 1, "at least one abandoned object must be reported"
    for m in clips["vehicle_counting_kerb"]["matches"]:
        assert 0 <= m["delay_s"] <= 20
    # every match is at its labelled place: the place error is measured, and no wider than a car
    for clip in clips.values():
        for m in clip["matches"]:
            assert m["place_error"] is not None and m["place_error"] <= 0.15, (clip["clip"], m)
    courtyard = clips["courtyard_kam1"]
    assert not [f for f in courtyard["false_positives"] if f["zone"] == "courtyard"], \
        "cars driving through the courtyard must not fire"
    assert len(courtyard["matches"]) >= 3, "the cars standing in the back row must be reported, each at its car"
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| overall |" in report and (tmp_path / "report" / "scores.png").stat().st_size > 1000


def test_tune_beats_or_equals_defaults(tmp_path: Path, clips: list[ClipLabels], cache_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    params = load_grid(GRID)
    combos = 1
    for p in params:
        combos *= len(p.values)
    assert combos >= 200

    fast = Replayer(cache_dir, default_detector_factory)
    default, trials = sweep(clips, params, fast)
    chosen = choose("f1", default, trials)
    assert len(trials) == combos

    # re-score the chosen setting and the defaults with a plain replay: no shortcuts
    plain = Replayer(cache_dir, None, split_zones=False, memo=False)
    by_key = {p.key: p for p in params}
    setting = {by_key[k]: v for k, v in chosen.setting.items()}
    rescored = score(match_clip(c.name, plain(c, apply_setting(c.camera, setting)), c.expected, c.quiet,
                                c.exhaustive) for c in clips)[OVERALL]
    baseline = score(match_clip(c.name, plain(c, c.camera), c.expected, c.quiet, c.exhaustive)
                     for c in clips)[OVERALL]
    with capsys.disabled():
        print(f"\ntune: {len(trials)} settings; default P={baseline.precision:.3f} R={baseline.recall:.3f} "
              f"F1={baseline.f1:.3f}; chosen {chosen.setting} P={rescored.precision:.3f} "
              f"R={rescored.recall:.3f} F1={rescored.f1:.3f}")
    assert (rescored.tp, rescored.fp, rescored.fn) == (chosen.overall.tp, chosen.overall.fp, chosen.overall.fn)
    assert (baseline.tp, baseline.fp, baseline.fn) == (default.overall.tp, default.overall.fp, default.overall.fn)
    assert rescored.f1 >= baseline.f1

    # and through the command line (a small grid around the choice): the patch names the changed
    # fields, old -> new, and its scores are the sweep's
    small = tmp_path / "grid.yaml"
    small.write_text(yaml.safe_dump({"no_parking:limit_s": [chosen.setting["no_parking:limit_s"], 8],
                                     "no_parking:min_score": [chosen.setting["no_parking:min_score"]]}))
    patch_path = tmp_path / "patch.yaml"
    rc = main(["tune", *map(str, LABELS), "--grid", str(small), "--cache-dir", str(cache_dir),
               "--out", str(patch_path), "--report", str(tmp_path / "tune")])
    capsys.readouterr()
    assert rc == 0
    patch = yaml.safe_load(patch_path.read_text())
    assert patch["scores"]["after"]["f1"] >= patch["scores"]["before"]["f1"]
    for cam in patch["cameras"].values():
        for fields in cam["zones"].values():
            for change in fields.values():
                assert set(change) == {"old", "new"} and change["old"] != change["new"]
    assert (tmp_path / "tune" / "pr.png").stat().st_size > 1000
