"""Label files: every file is validated before anything is replayed (every problem, with file and field),
pixel `where` boxes are checked against and normalised with the clip's frame size, and a replay of a
real clip matches by place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from eval_helpers import CountingDetector

from camera_config.schema import Camera
from evaluation.labels import ClipLabels, LabelError, load_labels, validate_label_files
from evaluation.matching import Observed, match_clip
from evaluation.replay import Replayer
from patrol.cli import main
from patrol.commands import evaluate as evaluate_cmd

FULL = [[0, 0], [1, 0], [1, 1], [0, 1]]
CAR_BOX_PX = (40, 30, 70, 50)  # the scripted detector's parked car on the 96x64 block clip


def label_doc(clip: str, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1, "clip": clip, "camera": "cam",
        "config": {"site": {"name": "t", "timezone": "UTC"}, "cameras": [{
            "id": "cam", "url": "file", "grid_cell": "G", "analysis_fps": 2.0,
            "detector": {"model": "yolox_nano_416", "default_score": 0.3},
            "zones": [{"id": "kerb", "type": "no_parking", "polygon": FULL, "limit_s": 1.0,
                       "close_grace_s": 1.0}]}]},
        "expected": [{"type": "illegal_parking", "zone": "kerb", "start": [0, 3],
                      "where": {"box": [36, 26, 74, 54], "units": "px"}, "note": "the parked car"}],
    }
    doc.update(over)
    return doc


def write(folder: Path, name: str, doc: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture()
def folder(tmp_path: Path, block_clip: Path) -> Path:
    (tmp_path / "block.mp4").write_bytes(block_clip.read_bytes())
    return tmp_path


def test_a_typo_in_a_later_file_fails_before_any_replay(folder: Path) -> None:
    good = [write(folder, f"good{i}.yaml", label_doc("block.mp4")) for i in range(3)]
    bad_doc = label_doc("block.mp4")
    bad_doc["expected"][0]["zone"] = "kreb"
    bad = write(folder, "late_typo.yaml", bad_doc)
    replays: list[str] = []

    def counting(labels: ClipLabels, camera: Camera) -> list[Observed]:
        replays.append(labels.name)
        return []

    with pytest.raises(LabelError) as err:
        evaluate_cmd.evaluate([*map(str, good), str(bad)], counting)
    assert replays == []
    assert f"{bad}: expected[0].zone: camera 'cam' has no zone 'kreb'" in str(err.value)
    assert "nothing was replayed" in str(err.value)
    assert not any(str(g) in str(err.value) for g in good)


def test_the_cli_reports_a_late_typo_before_running_a_detector(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    good = write(folder, "good.yaml", label_doc("block.mp4"))
    bad = write(folder, "bad.yaml", {**label_doc("block.mp4"), "expeted": []})
    detectors: list[str] = []

    def factory(camera: Camera) -> CountingDetector:
        detectors.append(camera.id)
        return CountingDetector()

    monkeypatch.setattr(evaluate_cmd, "default_detector_factory", factory)
    cache = folder / "cache"
    assert main(["eval", str(good), str(bad), "--cache-dir", str(cache)]) == 2
    out = capsys.readouterr()
    assert f"{bad}: expeted: unknown key 'expeted'" in out.err and "Traceback" not in out.err
    assert detectors == [] and not cache.exists() and "TP" not in out.out  # nothing was replayed
    # the same files without the typo replay (the good file's detector runs once)
    write(folder, "bad.yaml", label_doc("block.mp4"))
    assert main(["eval", str(good), str(bad), "--cache-dir", str(cache), "--quiet"]) == 0
    assert detectors == ["cam"] and "illegal_parking" in capsys.readouterr().out


def test_every_problem_of_every_file_is_reported(folder: Path) -> None:
    one = label_doc("block.mp4")
    one["expected"][0]["zone"] = "nope"
    one["expected"].append({"type": "illegal_parking", "zone": "kerb", "start": [0, 3],
                            "where": {"box": [80, 40, 120, 60], "units": "px"}})
    one["quiet"] = [{"from": 0, "zones": ["nowhere"]}]
    two = label_doc("missing.mp4", camera="other")
    three = label_doc("block.mp4")
    three["expected"][0]["where"] = {"box": [0.2, 0.2, 1.4, 0.6], "units": "norm"}
    four = label_doc("block.mp4")  # a zone over the left half; the box on the right
    four["config"]["cameras"][0]["zones"][0]["polygon"] = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
    four["expected"][0]["where"] = {"box": [0.6, 0.1, 0.9, 0.9], "units": "norm"}
    paths = [write(folder, "one.yaml", one), write(folder, "two.yaml", two), write(folder, "three.yaml", three),
             write(folder, "four.yaml", four), write(folder, "fine.yaml", label_doc("block.mp4"))]
    with pytest.raises(LabelError) as err:
        validate_label_files(paths)
    text = str(err.value)
    for needle in (f"{paths[0]}: expected[0].zone: camera 'cam' has no zone 'nope'",
                   f"{paths[0]}: quiet[0].zones: camera 'cam' has no zone 'nowhere'",
                   f"{paths[0]}: expected[1].where: box [80.0, 40.0, 120.0, 60.0] (px) goes past the clip's "
                   "96x64 frame",
                   f"{paths[1]}: camera: no camera 'other'",
                   f"{paths[1]}: clip: clip 'missing.mp4'",
                   f"{paths[2]}: expected.0.where: box [0.2, 0.2, 1.4, 0.6] is in units 'norm' but goes past 1",
                   f"{paths[3]}: expected[0].where: box [0.6, 0.1, 0.9, 0.9] (norm) lies wholly outside zone "
                   "'kerb'"):
        assert needle in text, (needle, text)
    assert text.startswith("7 problem(s) in 4 of 5 label file(s)")
    assert len(err.value.problems) == 7


def test_pixel_where_is_normalised_with_the_clip_frame_size(folder: Path) -> None:
    labels = load_labels(write(folder, "l.yaml", label_doc("block.mp4")))
    assert labels.frame_size == (96, 64)
    assert labels.doc.expected[0].where is not None and labels.doc.expected[0].where.units == "px"
    where = labels.expected[0].where
    assert where is not None and where.units == "norm"
    assert where.box == pytest.approx((36 / 96, 26 / 64, 74 / 96, 54 / 64))


def test_without_the_clip_pixel_boxes_stay_unchecked(folder: Path) -> None:
    doc = label_doc("not-here.mp4")
    doc["expected"][0]["where"] = {"box": [500, 400, 900, 700], "units": "px"}
    labels = load_labels(write(folder, "l.yaml", doc), check_clip=False)
    assert labels.frame_size is None and labels.expected[0].where is not None


@pytest.mark.parametrize(("box", "tp", "fp_reasons"), [
    pytest.param([36, 26, 74, 54], 1, [], id="box-around-the-car"),
    pytest.param([0, 0, 30, 60], 0, ["wrong_place"], id="box-left-of-the-car"),
    pytest.param(None, 1, [], id="no-where"),
])
def test_replayed_clip_matches_by_place(folder: Path, box: list[int] | None, tp: int, fp_reasons: list[str]) -> None:
    doc = label_doc("block.mp4")
    doc["expected"][0]["where"] = None if box is None else {"box": box, "units": "px"}
    labels = load_labels(write(folder, "l.yaml", doc))
    detector = CountingDetector()
    incidents = Replayer(folder / "cache", lambda camera: detector)(labels, labels.camera)
    assert [o.type for o in incidents] == ["illegal_parking"]
    x1, _, x2, y2 = CAR_BOX_PX  # the rule's place: the car's ground point, normalised
    assert incidents[0].place == pytest.approx(((x1 + x2) / 2 / 96, y2 / 64), abs=1e-3)
    res = match_clip(labels.name, incidents, labels.expected, labels.quiet, labels.exhaustive)
    assert len(res.matches) == tp and [f.reason for f in res.false_positives] == fp_reasons
    assert len(res.missed) == 1 - tp
    if box is not None and tp:
        # from the ground point (55, 50) px to the box's bottom centre (55, 54) px: 4/64 of the height
        assert res.matches[0].place_error == pytest.approx(4 / 64, abs=1e-3)
