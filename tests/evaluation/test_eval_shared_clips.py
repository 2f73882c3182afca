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
from evaluation.tune import apply_setting, is_limit, load_grid, tune_per_camera
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


def test_tune_per_camera_beats_or_equals_defaults_from_the_middle_of_the_plateau(
        clips: list[ClipLabels], cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = load_grid(GRID)
    fast = Replayer(cache_dir, default_detector_factory)
    tunings = tune_per_camera(clips, params, fast)
    assert {t.camera for t in tunings} == {c.camera.id for c in clips}
    plain = Replayer(cache_dir, None, split_zones=False, memo=False)
    for t in tunings:
        assert not any(is_limit(p) for p in t.params), "limits are policy: held fixed"
        # re-score the chosen setting and the defaults with a plain replay: no shortcuts
        by_key = {p.key: p for p in t.params}
        setting = {by_key[k]: v for k, v in t.chosen.setting.items()}
        rescored = score(match_clip(c.name, plain(c, apply_setting(c.camera, setting)), c.expected, c.quiet,
                                    c.exhaustive) for c in t.labels)[OVERALL]
        baseline = score(match_clip(c.name, plain(c, c.camera), c.expected, c.quiet, c.exhaustive)
                         for c in t.labels)[OVERALL]
        o = t.chosen.overall
        assert (rescored.tp, rescored.fp, rescored.fn) == (o.tp, o.fp, o.fn), t.camera
        assert (baseline.tp, baseline.fp, baseline.fn) == (t.default.overall.tp, t.default.overall.fp,
                                                           t.default.overall.fn), t.camera
        assert rescored.f1 >= baseline.f1, t.camera
        # not at the grid's edge where the plateau goes on inward (along every parameter it depends on)
        plateau = [x.setting for x in t.plateau]
        if not t.chosen.is_default:
            for p in t.params:
                values = list(p.values)
                i = values.index(t.chosen.setting[p.key])
                if i in (0, len(values) - 1) and len(values) > 1:
                    inward = {**t.chosen.setting, p.key: values[1 if i == 0 else -2]}
                    line = [{**t.chosen.setting, p.key: v} for v in values]
                    assert inward not in plateau or all(x in plateau for x in line), (t.camera, p.key)
        with capsys.disabled():
            print(f"\ntune {t.camera}: {len(t.trials)} settings, plateau {len(t.plateau)}; default "
                  f"F1={baseline.f1:.3f}; chosen "
                  f"{'as configured' if t.chosen.is_default else t.chosen.setting} F1={rescored.f1:.3f}")



def test_patrol_tune_writes_a_per_camera_patch(tmp_path: Path, cache_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Through the command line (a small grid): the patch names each camera's changed fields,
    old -> new, limits held; its scores after are at least those before, per camera and overall."""
    small = tmp_path / "grid.yaml"
    small.write_text(yaml.safe_dump({"no_parking:limit_s": [4, 8], "no_parking:still_tolerance": [0.25, 0.35, 0.5],
                                     "no_parking:min_score": [0.2, 0.3]}))
    patch_path = tmp_path / "patch.yaml"
    rc = main(["tune", *map(str, LABELS), "--grid", str(small), "--cache-dir", str(cache_dir),
               "--out", str(patch_path), "--report", str(tmp_path / "tune")])
    capsys.readouterr()
    assert rc == 0
    patch = yaml.safe_load(patch_path.read_text())
    assert patch["scores"]["after"]["f1"] >= patch["scores"]["before"]["f1"]
    for cam in patch["cameras"].values():
        assert cam["scores"]["after"]["f1"] >= cam["scores"]["before"]["f1"]
        assert "limit_s" not in {f for fields in cam["zones"].values() for f in fields}
        for fields in cam["zones"].values():
            for change in fields.values():
                assert set(change) == {"old", "new"} and change["old"] != change["new"]
    pngs = list((tmp_path / "tune").glob("pr-*.png"))
    assert pngs and all(png.stat().st_size > 1000 for png in pngs)
    assert "camera street-kerb" in (tmp_path / "tune" / "tune.md").read_text()
