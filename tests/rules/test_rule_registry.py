"""The registry of rule kinds: a toy kind declared in this module alone — schema class, rule and
verification check — runs through ``patrol replay`` on a shared clip; an unknown zone type is an
error everywhere (config, analyzer, verifier), never a fallback; schedules are applied by the
analyzer, for every kind alike."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from pydantic import Field, ValidationError

from camera_config import parse_config
from camera_config.schema import Camera, ZoneBase, register_zone_schema, unregister_zone_schema, zone_schema, zone_types
from core.coco import CLASS_ID
from core.errors import ConfigError
from core.events import Evidence
from core.fakes import ScriptedObject
from core.types import Detections, Frame, Track
from patrol.cli import main
from pipeline.zones import build_zone_mask
from rules.analyzer import CameraAnalyzer
from rules.checks import ZoneCheck, check_zone
from rules.findings import Finding
from rules.registry import (
    RuleContext,
    RuleKind,
    UnknownRuleKind,
    register,
    rule_kind,
    rule_kinds,
    unregister,
    zone_check,
)

# --- the toy kind: one schema class, one rule, one check -------------------------------------------


class ToyVehiclesZone(ZoneBase):
    """Toy rule kind: at least ``min_count`` vehicles stand in the zone at once for ``limit_s``."""

    type: Literal["toy_vehicles"]
    limit_s: float = Field(default=2.0, gt=0, le=86_400)
    classes: tuple[str, ...] = Field(default=("car", "truck", "bus"), min_length=1)
    min_count: int = Field(default=1, ge=1, le=100)


class ToyVehiclesRule:
    """Counts the zone's vehicles by their ground points; reports the zone (at its centroid) once
    the count has held for ``limit_s``."""

    def __init__(self, zone: ToyVehiclesZone, frame_size: tuple[int, int]) -> None:
        self.zone = zone
        self.zone_id = zone.id
        self.mask = build_zone_mask(zone, *frame_size)
        self.classes = [CLASS_ID[c] for c in zone.classes]
        self.since: float | None = None
        self.frames_fed = 0

    def update(self, frame: Frame, tracks: Sequence[Track], detections: Detections) -> list[Finding]:
        self.frames_fed += 1
        dets = detections[np.isin(detections.class_id, self.classes)]
        count = int(self.mask.contains_boxes(dets.xyxy).sum())
        if count < self.zone.min_count:
            self.since = None
            return []
        self.since = frame.pts if self.since is None else self.since
        if frame.pts - self.since < self.zone.limit_s:
            return []
        xs, ys = zip(*self.zone.polygon, strict=True)
        return [Finding(type="obstruction", zone_id=self.zone_id, place=(sum(xs) / len(xs), sum(ys) / len(ys)),
                        started_pts=self.since, severity=self.zone.severity,
                        evidence=Evidence(signals={"vehicles_in_zone": float(count)},
                                          durations={"held_s": round(frame.pts - self.since, 3)},
                                          thresholds={"limit_s": self.zone.limit_s,
                                                      "min_count": float(self.zone.min_count)}))]


def toy_check(zone: ToyVehiclesZone, default_score: float) -> ZoneCheck:
    return ZoneCheck.of_classes(zone, zone.classes, default_score)


def toy_rule(zone: ToyVehiclesZone, ctx: RuleContext) -> ToyVehiclesRule:
    return ToyVehiclesRule(zone, ctx.frame_size)


@pytest.fixture
def toy_kind() -> Iterator[RuleKind[ToyVehiclesZone]]:
    kind = RuleKind(ToyVehiclesZone, toy_rule, toy_check)
    register(kind)
    try:
        yield kind
    finally:
        unregister("toy_vehicles")


@pytest.fixture
def toy_observing() -> Iterator[RuleKind[ToyVehiclesZone]]:
    """The same toy, declared to keep observing while its schedule is inactive."""
    kind = RuleKind(ToyVehiclesZone, toy_rule, toy_check, off_schedule="observe")
    register(kind)
    try:
        yield kind
    finally:
        unregister("toy_vehicles")


WHOLE_FRAME = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]


def toy_site(clip: Path, zone: dict[str, Any]) -> str:
    site = {"version": 1, "site": {"name": "Toy kind", "timezone": "Asia/Shanghai"},
            "cameras": [{"id": "cam-1", "url": str(clip), "grid_cell": "JD-0101", "analysis_fps": 1,
                         "detector": {"model": "yolox_nano_416"}, "zones": [zone]}]}
    return json.dumps(site)  # JSON is YAML


# --- the toy kind end to end --------------------------------------------------------------------------


def test_toy_kind_runs_through_patrol_replay_on_a_shared_clip(toy_kind, asset_path, tmp_path, capsys) -> None:
    """The street clip has cars standing along its right kerb from the first frame; the toy zone
    covers the whole frame, so it holds a car from the start and fires at its limit (2 s)."""
    clip = asset_path("vehicle_counting_input_video")
    config = tmp_path / "site.yaml"
    config.write_text(toy_site(clip, {"id": "toy", "type": "toy_vehicles", "polygon": WHOLE_FRAME, "min_count": 1}))
    assert main(["check-config", str(config)]) == 0
    capsys.readouterr()
    assert main(["replay", "--config", str(config), "--camera", "cam-1", "--source", str(clip)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    opened = [e for e in events if e["event"] == "opened"]
    assert opened, "the toy rule opened no incident"
    first = opened[0]
    assert (first["zone_id"], first["type"]) == ("toy", "obstruction")
    assert first["evidence"]["signals"]["vehicles_in_zone"] >= 1
    assert first["evidence"]["thresholds"] == {"limit_s": 2.0, "min_count": 1.0}
    assert 2.0 <= first["evidence"]["durations"]["held_s"] < 3.0  # at its limit, within one analysed frame
    assert {e["zone_id"] for e in events} == {"toy"}
    print(f"toy kind on the street clip: {len(opened)} opened, the first at {first['stream_pts']:.1f} s")


def test_toy_kind_is_in_the_config_schema_and_the_table(toy_kind, capsys) -> None:
    assert "toy_vehicles" in zone_types() and zone_schema("toy_vehicles") is ToyVehiclesZone
    assert rule_kind("toy_vehicles") is toy_kind and toy_kind in rule_kinds()
    assert main(["config-schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    items = schema["$defs"]["Camera"]["properties"]["zones"]["items"]
    assert set(items["discriminator"]["mapping"]) == {"no_parking", "no_vending", "keep_clear", "toy_vehicles"}
    assert schema["$defs"]["ToyVehiclesZone"]["properties"]["min_count"]["minimum"] == 1


def test_toy_zone_errors_keep_their_field_location(toy_kind) -> None:
    raw = json.loads(toy_site(Path("clip.mp4"), {"id": "toy", "type": "toy_vehicles", "polygon": WHOLE_FRAME,
                                                  "min_count": 0}))
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "site.yaml")
    assert info.value.problems == [
        "site.yaml: camera 'cam-1': cameras[0].zones[0].min_count: Input should be greater than or equal to 1"]


def test_toy_check_is_what_the_verifier_runs(toy_kind) -> None:
    zone = ToyVehiclesZone(id="toy", type="toy_vehicles", polygon=((0, 0.5), (1, 0.5), (1, 1), (0, 1)))
    check = zone_check(zone, 0.3)
    assert check.class_ids == {CLASS_ID["car"], CLASS_ID["truck"], CLASS_ID["bus"]} and check.min_score == 0.3
    frames = [Frame("cam-1", float(i), float(i), np.zeros((100, 200, 3), np.uint8)) for i in range(4)]
    car_low = Detections(np.array([[10, 60, 50, 90]], np.float32), np.array([0.9], np.float32),
                         np.array([CLASS_ID["car"]], np.int32))
    car_high = Detections(np.array([[10, 10, 50, 40]], np.float32), np.array([0.9], np.float32),
                          np.array([CLASS_ID["car"]], np.int32))
    assert check_zone(frames, lambda images: [car_low] * len(images), check)["present"] is True
    assert check_zone(frames, lambda images: [car_high] * len(images), check)["present"] is False


# --- unknown zone types: an error wherever they are met ----------------------------------------------------


def test_unknown_zone_type_fails_config_validation_naming_the_known_types() -> None:
    raw = json.loads(toy_site(Path("clip.mp4"), {"id": "toy", "type": "toy_vehicles", "polygon": WHOLE_FRAME}))
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "site.yaml")
    assert info.value.problems == ["site.yaml: camera 'cam-1': cameras[0].zones[0].type: unknown zone type "
                                   "'toy_vehicles'; known types: keep_clear, no_parking, no_vending"]


def test_zone_without_a_type_names_the_known_types() -> None:
    raw = json.loads(toy_site(Path("clip.mp4"), {"id": "toy", "polygon": WHOLE_FRAME}))
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.zones\[0\]\.type: missing zone type; known types: "):
        parse_config(raw, "site.yaml")


def test_unregistered_zone_has_no_verification_check() -> None:
    zone = ToyVehiclesZone(id="toy", type="toy_vehicles", polygon=((0, 0), (1, 0), (1, 1)))
    with pytest.raises(UnknownRuleKind, match="zone type 'toy_vehicles' has no registered rule kind"):
        zone_check(zone, 0.3)


def test_a_schema_without_a_rule_kind_is_an_error_for_the_analyzer_and_the_verifier() -> None:
    """The config's table may know a type the rules do not: analysing or verifying it fails, naming
    camera and zone, rather than running some other kind's rule."""
    register_zone_schema(ToyVehiclesZone)
    try:
        camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "G",
                                        "zones": [{"id": "toy", "type": "toy_vehicles", "polygon": WHOLE_FRAME}]})
        with pytest.raises(UnknownRuleKind, match="camera 'cam-1': zone 'toy': zone type 'toy_vehicles' has no "
                                                  "registered rule kind"):
            CameraAnalyzer(camera)
        with pytest.raises(UnknownRuleKind):
            zone_check(camera.zones[0], 0.3)
    finally:
        unregister_zone_schema("toy_vehicles")


def test_a_zone_instance_of_an_unregistered_class_is_refused() -> None:
    zone = ToyVehiclesZone(id="toy", type="toy_vehicles", polygon=((0, 0), (1, 0), (1, 1)))
    with pytest.raises(ValidationError, match=r"zone type 'toy_vehicles' \(ToyVehiclesZone\) is not registered"):
        Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "G", "zones": [zone]})


def test_a_taken_zone_type_cannot_be_registered_again() -> None:
    class OtherParking(ZoneBase):
        type: Literal["no_parking"]

    with pytest.raises(ValueError, match="rule kind 'no_parking' is already registered"):
        register(RuleKind(OtherParking, toy_rule, toy_check))
    with pytest.raises(ValueError, match="zone type 'no_parking' is already registered"):
        register_zone_schema(OtherParking)
    assert zone_schema("no_parking").__name__ == "NoParkingZone"


def test_a_schema_must_name_its_type_with_one_literal() -> None:
    class Untyped(ZoneBase):
        pass

    with pytest.raises(TypeError, match=r"field 'type' must be Literal\['<name>'\]"):
        register_zone_schema(Untyped)


def test_the_built_in_kinds_are_registered_with_their_schemas() -> None:
    kinds = {k.zone_type: k for k in rule_kinds()}
    assert {"no_parking", "no_vending", "keep_clear"} <= set(kinds)
    for name, kind in kinds.items():
        assert zone_schema(name) is kind.schema
    assert [kinds[n].reads_pixels for n in ("no_parking", "no_vending", "keep_clear")] == [False, True, True]


# --- the schedule: applied by the analyzer, for every kind -------------------------------------------


CAR = (300.0, 200.0, 380.0, 260.0)
# the scenes start on Monday 09:00 in Shanghai (run_scene); the window opens a minute later, at 60 s
WINDOW = {"windows": [{"start": "09:01", "end": "10:00"}]}


def toy_zone(**kw: Any) -> dict[str, Any]:
    return {"id": "toy", "type": "toy_vehicles", "polygon": WHOLE_FRAME, "limit_s": 4.0, **kw}


@pytest.mark.parametrize(("schedule", "opened"), [
    (None, [4.0]),            # always on: the car, there from 0 s, holds for the limit at 4 s
    (WINDOW, [64.0]),         # reset off schedule: the count starts when the window opens at 60 s
])
def test_a_resetting_kind_counts_only_on_schedule(toy_kind, run_scene, schedule, opened) -> None:
    zone = toy_zone(**({"schedule": schedule} if schedule else {}))
    run = run_scene([zone], [ScriptedObject("car", CAR)], 70)
    assert run.opened_pts == opened
    assert run.of("opened")[0].started_at - run.of("opened")[0].event_at == pytest.approx(-4.0)


def test_an_observing_kind_is_fed_off_schedule_and_reports_when_it_opens(toy_observing, run_scene) -> None:
    """Declared ``observe``: fed while the window is shut (its clock runs from 0 s), its findings
    dropped until the window opens at 60 s, when it reports at once with the car's true start."""
    run = run_scene([toy_zone(schedule=WINDOW)], [ScriptedObject("car", CAR)], 70)
    assert run.opened_pts == [60.0]
    (event,) = run.of("opened")
    assert event.event_at - event.started_at == pytest.approx(60.0)
    assert run.analyzer.rules[0].frames_fed == 141  # type: ignore[attr-defined]  # every frame, 0..70 s at 2 fps


def test_a_resetting_kind_is_not_fed_off_schedule(toy_kind, run_scene) -> None:
    run = run_scene([toy_zone(schedule=WINDOW)], [ScriptedObject("car", CAR)], 70)
    assert run.analyzer.rules[0].frames_fed == 21  # type: ignore[attr-defined]  # 60..70 s at 2 fps


def test_schema_round_trip_keeps_every_zone_field(toy_kind) -> None:
    camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "G",
                                    "zones": [toy_zone(min_count=3)]})
    dumped = camera.model_dump(mode="python")
    assert dumped["zones"][0]["min_count"] == 3
    again = copy.deepcopy(dumped)
    again["url"] = "clip.mp4"
    assert Camera.model_validate(again).zones == camera.zones
