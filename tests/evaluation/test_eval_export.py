"""Operator verdicts from the review database become labels: confirmed -> expected, rejected -> quiet.
Then the exported labels score a replay of the same clip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from eval_helpers import CountingDetector

from camera_config.schema import Camera
from core.errors import PatrolError
from evaluation.export import PLACE_HALF, labels_from_verdicts, parse_time, place_box
from evaluation.labels import load_labels, sha256_file
from evaluation.matching import match_clip
from evaluation.replay import Replayer
from patrol.cli import main

CLIP_START = 1_750_000_000.0
SITE: dict[str, Any] = {
    "site": {"name": "t", "timezone": "UTC"},
    "cameras": [{"id": "cam", "url": "rtsp://viewer:hunter2@10.0.0.1/s", "grid_cell": "G", "analysis_fps": 2.0,
                 "zones": [
                     {"id": "kerb", "type": "no_parking", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                      "limit_s": 1.0, "close_grace_s": 1.0},
                     {"id": "pav", "type": "no_vending", "polygon": [[0, 0], [1, 0], [1, 1]], "limit_s": 60}]}],
}


def _store(db: Any, make_incident_event: Any) -> None:
    from storage.repository import add_verdict, apply_incident_event

    with db.transaction() as s:
        def incident(iid: str, type_: str, zone: str, started: float, opened: float, verdict: str | None,
                     location: tuple[float, float] = (0.5, 0.8)) -> None:
            apply_incident_event(s, make_incident_event(iid, 1, "opened", camera_id="cam", type=type_, zone_id=zone,
                                                        started_at=CLIP_START + started,
                                                        event_at=CLIP_START + opened, location=location))
            if verdict is not None:
                add_verdict(s, iid, "op1", verdict, "checked on video", at=CLIP_START + 100)

        # the scripted car's ground point on the block clip is (55/96, 50/64) = (0.573, 0.781)
        incident("inc-confirmed-1", "illegal_parking", "kerb", 1.0, 2.0, "confirm", (0.57, 0.78))
        incident("inc-rejected-01", "street_stall", "pav", 2.5, 3.0, "reject")
        incident("inc-unreviewed1", "illegal_parking", "kerb", 1.5, 2.5, None)
        incident("inc-other-clip1", "illegal_parking", "kerb", 500.0, 510.0, "confirm")
        # an operator who changed their mind: the latest verdict wins
        incident("inc-changed-001", "street_stall", "pav", 1.0, 1.5, "confirm")
        add_verdict(s, "inc-changed-001", "op2", "reject", "just a bench", at=CLIP_START + 200)


def test_export_labels_then_evaluate(tmp_path: Path, block_clip: Path, db: Any, make_incident_event: Any,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _store(db, make_incident_event)
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(SITE), encoding="utf-8")
    out = tmp_path / "labels" / "exported.yaml"
    rc = main(["eval", "export-labels", "--db", db.url, "--camera", "cam", "--clip", str(block_clip),
               "--config", str(config), "--clip-start", "2025-06-15T15:06:40+00:00", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    text = out.read_text()
    assert "hunter2" not in text
    labels = load_labels(out)
    assert labels.clip.resolve() == block_clip.resolve()
    assert labels.doc.clip_sha256 == sha256_file(block_clip)
    assert labels.exhaustive is False
    assert [(e.type, e.zone, e.start.lo, e.start.hi) for e in labels.expected] == [
        ("illegal_parking", "kerb", 1.0, 32.0)]
    where = labels.expected[0].where  # the confirmed place, +- the lifecycle's place radius
    assert where is not None and where.units == "norm"
    assert where.box == pytest.approx((0.52, 0.73, 0.62, 0.83)) and where.point == pytest.approx((0.57, 0.78))
    assert sorted((q.start, q.stop, q.types, q.zones) for q in labels.quiet) == [
        (0.0, 31.5, ("street_stall",), ("pav",)), (0.0, 33.0, ("street_stall",), ("pav",))]

    # the exported labels score a replay: the parked "car" of the scripted detector is matched
    detector = CountingDetector()

    def factory(camera: Camera) -> CountingDetector:
        return detector

    incidents = Replayer(tmp_path / "cache", factory)(labels, labels.camera)
    result = match_clip(labels.name, incidents, labels.expected, labels.quiet, labels.exhaustive)
    assert len(result.matches) == 1 and result.missed == () and result.false_positives == ()
    # measured from the replayed ground point (0.573, 0.781) to the confirmed one (0.57, 0.78)
    assert result.matches[0].place_error == pytest.approx(0.0032, abs=5e-4)


def test_exported_place_box_is_the_lifecycle_place_radius() -> None:
    from rules.lifecycle import IncidentLifecycle

    assert IncidentLifecycle.place_radius == PLACE_HALF
    assert place_box((0.02, 0.99)) == [0.0, 0.94, 0.07, 1.0]  # clipped to the frame


def test_labels_from_verdicts_skips_camera_level_incidents() -> None:
    from evaluation.export import Reviewed

    reviewed = [Reviewed("i1", "camera_offline", None, CLIP_START, CLIP_START + 1, None, "confirm", ""),
                Reviewed("i2", "obstruction", "road", CLIP_START + 10, CLIP_START + 40, None, "confirm", "")]
    doc = labels_from_verdicts(reviewed, clip="c.mp4", clip_sha256="0" * 64, camera="cam", config="s.yaml",
                               clip_start=CLIP_START, slack_s=10)
    assert doc["expected"] == [{"type": "obstruction", "zone": "road", "start": [10.0, 50.0],
                                "note": "incident i2: operator confirm"}]


@pytest.mark.parametrize(("text", "value"), [("1750000000", CLIP_START), ("2025-06-15T15:06:40Z", CLIP_START),
                                             ("2025-06-15T15:06:40", CLIP_START),
                                             ("2025-06-15T23:06:40+08:00", CLIP_START)])
def test_parse_time(text: str, value: float) -> None:
    assert parse_time(text) == value


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(PatrolError, match="--clip-start"):
        parse_time("yesterday")


def test_export_needs_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "export-labels", "--db", "sqlite:///x.db"]) == 2
    err = capsys.readouterr().err
    assert "--camera" in err and "--clip" in err and "Traceback" not in err


def test_clip_start_from_creation_time(tmp_path: Path, block_clip: Path) -> None:
    import av

    from evaluation.export import clip_creation_time

    assert clip_creation_time(block_clip) is None
    tagged = tmp_path / "tagged.mp4"
    with av.open(str(block_clip)) as src, av.open(str(tagged), "w") as dst:
        dst.metadata["creation_time"] = "2025-06-15T15:06:40.000000Z"
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    assert clip_creation_time(tagged) == CLIP_START


def test_site_config_found_by_camera(tmp_path: Path) -> None:
    from evaluation.export import find_site_config

    (tmp_path / "a.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    other = {**SITE, "cameras": [{**SITE["cameras"][0], "id": "other"}]}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    (tmp_path / "broken.yaml").write_text("site: [", encoding="utf-8")
    assert find_site_config("cam", tmp_path) == tmp_path / "a.yaml"
    with pytest.raises(PatrolError, match="'nope' is in no file"):
        find_site_config("nope", tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(SITE), encoding="utf-8")
    with pytest.raises(PatrolError, match="name the site file"):
        find_site_config("cam", tmp_path)
