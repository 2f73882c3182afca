"""Obstruction rule tables on synthetic frames and a fake clock: exact timings, every "nothing" case.

The scene is a 320x240 "street" (smooth texture, kerb and lane markings) at 2 fps; objects are
painted into it. With ``limit_s`` 10 s an object that appears at t = 5 s is foreground to the
long-term model from that very frame, so the rule must fire exactly at 15 s with ``started_pts``
5 s, and never before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np
import pytest

from camera_config.schema import KeepClearZone
from core.coco import CLASS_ID
from core.types import Detections, Frame
from rules.background import DualBackground
from rules.findings import Finding
from rules.obstruction import ObstructionRule

W, H = 320, 240
MONDAY_9AM = datetime.fromisoformat("2026-03-02T09:00:00+08:00").timestamp()
Box = tuple[int, int, int, int]


def street(seed: int = 7) -> np.ndarray:
    """A textured grey background with structure for phase correlation to lock on."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(70, 160, (H, W)).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 1.2)  # asphalt-like grain, grey-level spread ~10
    img = np.dstack([base, base, base])
    cv2.rectangle(img, (0, 0), (W, 60), (150, 145, 140), -1)  # building
    cv2.rectangle(img, (0, 60), (W, 70), (70, 70, 70), -1)  # kerb
    for x in range(10, W, 60):
        cv2.rectangle(img, (x, 150), (x + 30, 156), (150, 150, 150), -1)  # lane marking
    for x in range(20, W, 45):
        cv2.rectangle(img, (x, 10), (x + 15, 40), (60, 80, 100), -1)  # windows
    return np.clip(img, 0, 255).astype(np.uint8)


def grey_box(img: np.ndarray, box: Box) -> None:
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = (60, 60, 60)
    cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), (40, 40, 40), 2)


def branch(img: np.ndarray, box: Box, seed: int = 3) -> None:
    """Leaves and twigs: a green/brown tangle of short strokes."""
    x1, y1, x2, y2 = box
    rng = np.random.default_rng(seed)
    patch = img[y1:y2, x1:x2]
    patch[:] = (30, 70, 40)  # dark green shade
    for _ in range(160):
        px, py = int(rng.integers(0, x2 - x1)), int(rng.integers(0, y2 - y1))
        dx, dy = (int(v) for v in rng.integers(-6, 7, 2))
        colour = (40, 160, 60) if rng.random() < 0.6 else (30, 70, 120)  # leaf green / bark brown (BGR)
        cv2.line(patch, (px, py), (px + dx, py + dy), colour, 1)


Painter = Callable[[np.ndarray, Box], None]


@dataclass
class Thing:
    """Something painted into the scene from ``start`` to ``end`` (s)."""

    box: Box
    start: float
    end: float = math.inf
    paint: Painter = grey_box


@dataclass
class Cover:
    """A detected person/vehicle box from ``start`` to ``end`` (painted as a bright blob)."""

    label: str
    box: Box
    start: float = 0.0
    end: float = math.inf


@dataclass
class Scene:
    things: Sequence[Thing] = ()
    covers: Sequence[Cover] = ()
    gain: Callable[[float], float] = lambda t: 1.0
    shift: Callable[[float], tuple[int, int]] = lambda t: (0, 0)
    background: np.ndarray = field(default_factory=street)

    def image(self, t: float) -> np.ndarray:
        img = self.background.copy()
        for thing in self.things:
            if thing.start <= t < thing.end:
                thing.paint(img, thing.box)
        for cover in self.covers:
            if cover.start <= t < cover.end:
                x1, y1, x2, y2 = cover.box
                img[y1:y2, x1:x2] = (200, 190, 180)
        g = self.gain(t)
        if g != 1.0:
            img = np.clip(img.astype(np.float32) * g, 0, 255).astype(np.uint8)
        dx, dy = self.shift(t)
        if dx or dy:
            m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
            img = cv2.warpAffine(img, m, (W, H), borderMode=cv2.BORDER_REFLECT)
        return img

    def detections(self, t: float) -> Detections:
        live = [c for c in self.covers if c.start <= t < c.end]
        if not live:
            return Detections.empty()
        return Detections(np.array([c.box for c in live], np.float32), np.full(len(live), 0.9, np.float32),
                          np.array([CLASS_ID[c.label] for c in live], np.int32))


def keep_clear(**kw: object) -> KeepClearZone:
    spec: dict[str, object] = {"id": "road", "type": "keep_clear",
                               "polygon": [(0.0, 0.3), (1.0, 0.3), (1.0, 1.0), (0.0, 1.0)],
                               "limit_s": 10.0, "long_term_s": 60.0, "short_term_s": 2.0, "min_area": 0.005}
    spec.update(kw)
    return KeepClearZone.model_validate(spec)


@dataclass
class Run:
    findings: list[tuple[float, Finding]]

    @property
    def first_pts(self) -> float | None:
        return self.findings[0][0] if self.findings else None

    @property
    def types(self) -> set[str]:
        return {f.type for _, f in self.findings}


def run(scene: Scene, duration_s: float, fps: float = 2.0, zone: KeepClearZone | None = None,
        skip: Callable[[float], bool] = lambda t: False, rule: ObstructionRule | None = None) -> Run:
    rule = rule or ObstructionRule(zone or keep_clear(), (W, H))
    out: list[tuple[float, Finding]] = []
    for i in range(math.floor(duration_s * fps) + 1):
        t = round(i / fps, 6)
        if skip(t):
            continue
        frame = Frame("cam-1", t, MONDAY_9AM + t, scene.image(t))
        out.extend((t, f) for f in rule.update(frame, [], scene.detections(t)))
    return Run(out)


BOX: Box = (140, 120, 190, 170)  # 50x50 px = 3.3% of the frame, ground point in the zone


@pytest.mark.parametrize("fps", [1.0, 2.0, 5.0])
def test_fires_at_the_limit_and_not_before_at_any_rate(fps: float) -> None:
    result = run(Scene(things=[Thing(BOX, start=5.0)]), 30.0, fps=fps)
    assert result.first_pts == pytest.approx(15.0)
    assert all(t >= 15.0 for t, _ in result.findings)
    assert {f.started_pts for _, f in result.findings} == {5.0}
    assert result.types == {"obstruction"}
    # every frame from the limit on reports the object, at one place
    assert len(result.findings) == math.floor(15 * fps) + 1
    places = {tuple(round(v, 3) for v in f.place) for _, f in result.findings}
    assert len(places) == 1
    x, y = places.pop()
    assert x == pytest.approx(165 / W, abs=0.02) and y == pytest.approx(170 / H, abs=0.02)


def test_finding_carries_evidence_in_numbers() -> None:
    (t, finding), *_ = run(Scene(things=[Thing(BOX, start=5.0)]), 16.0).findings
    ev = finding.evidence
    assert finding.zone_id == "road" and finding.severity == "medium"
    (box,) = ev.boxes
    assert box.label == "static_region"
    assert box.xyxy[0] == pytest.approx(140, abs=3) and box.xyxy[3] == pytest.approx(170, abs=3)
    assert ev.durations["static_s"] == pytest.approx(t - 5.0)
    assert ev.signals["area_frac"] == pytest.approx(50 * 50 / (W * H), rel=0.2)
    assert ev.thresholds["limit_s"] == 10.0 and ev.thresholds["min_area"] == 0.005
    assert ev.frame_size == (W, H)


def test_dropped_frames_do_not_change_the_timing() -> None:
    # 6 s without frames while the object stands: the clock runs on pts, not frame counts
    result = run(Scene(things=[Thing(BOX, start=5.0)]), 30.0, skip=lambda t: 8.0 <= t < 14.0)
    assert result.first_pts == pytest.approx(15.0)
    assert result.findings[0][1].started_pts == 5.0


def test_object_removed_before_the_limit_gives_nothing() -> None:
    assert run(Scene(things=[Thing(BOX, start=5.0, end=13.0)]), 40.0).findings == []


def test_object_removed_after_the_limit_stops_being_reported() -> None:
    result = run(Scene(things=[Thing(BOX, start=5.0, end=20.0)]), 40.0)
    assert result.first_pts == pytest.approx(15.0)
    assert max(t for t, _ in result.findings) < 20.0


def test_tiny_object_below_min_area_gives_nothing() -> None:
    # 10x10 px = 0.13% of the frame, min_area 0.5%
    assert run(Scene(things=[Thing((150, 130, 160, 140), start=5.0)]), 30.0).findings == []


def test_same_object_fires_when_min_area_allows_it() -> None:
    result = run(Scene(things=[Thing((150, 130, 160, 140), start=5.0)]), 30.0, zone=keep_clear(min_area=0.0005))
    assert result.first_pts == pytest.approx(15.0)


def test_ground_point_outside_the_zone_gives_nothing() -> None:
    zone = keep_clear(polygon=[(0.0, 0.0), (0.4, 0.0), (0.4, 1.0), (0.0, 1.0)])  # left 40% only
    assert run(Scene(things=[Thing(BOX, start=5.0)]), 30.0, zone=zone).findings == []


@pytest.mark.parametrize("label", ["person", "car"])
def test_region_covered_by_a_person_or_vehicle_box_gives_nothing(label: str) -> None:
    # someone/something stands there for the whole clip: the parking rule's or nobody's business
    scene = Scene(covers=[Cover(label, (135, 100, 195, 175), start=5.0)])
    assert run(scene, 40.0).findings == []


def test_person_leaving_does_not_leave_a_ghost() -> None:
    # a person stands in the zone from the first frame and walks off at 12 s
    scene = Scene(covers=[Cover("person", (135, 100, 195, 175), start=0.0, end=12.0)])
    assert run(scene, 40.0).findings == []


def test_bag_left_by_a_person_fires_after_they_go() -> None:
    # a person stands by the spot 3..12 s and leaves a box there at 5 s (partly under their box)
    scene = Scene(things=[Thing(BOX, start=5.0)],
                  covers=[Cover("person", (170, 80, 220, 172), start=3.0, end=12.0)])
    result = run(scene, 40.0)
    assert result.first_pts is not None and 15.0 <= result.first_pts <= 17.0
    assert {f.started_pts for _, f in result.findings} == {5.0}


LIGHT = [
    ("brightens gradually", lambda t: 1.0 + 0.6 * min(t, 40.0) / 40.0),
    ("darkens gradually", lambda t: 1.0 - 0.5 * min(t, 40.0) / 40.0),
    ("brightens suddenly", lambda t: 1.6 if t >= 8.0 else 1.0),
    ("darkens suddenly", lambda t: 0.5 if t >= 8.0 else 1.0),
    ("flickers", lambda t: 1.3 if int(t) % 7 < 3 else 1.0),
]


@pytest.mark.parametrize("name, gain", LIGHT)
def test_global_illumination_change_gives_nothing(name: str, gain: Callable[[float], float]) -> None:
    assert run(Scene(gain=gain), 45.0).findings == [], name


@pytest.mark.parametrize("name, gain", LIGHT)
def test_object_found_on_time_while_the_light_changes(name: str, gain: Callable[[float], float]) -> None:
    # the light changes while the object stands there: the change is divided out, not re-learnt,
    # so the object keeps its clock and the models are never thrown away
    rule = ObstructionRule(keep_clear(), (W, H))
    result = run(Scene(things=[Thing(BOX, start=5.0)], gain=gain), 20.0, rule=rule)
    assert result.first_pts == pytest.approx(15.0), name
    assert {f.started_pts for _, f in result.findings} == {5.0}
    assert rule.background.global_changes == 0


def test_part_of_the_frame_lit_is_recognised_as_light_not_an_object() -> None:
    # the upper two thirds of the picture doubles in brightness at 8 s: the global gain (the
    # median ratio, ~2) over-corrects the lower third, which then looks darker than the model;
    # that region shows the model's own texture (correlation >= 0.85) and is learnt as light
    scene = Scene()
    base = scene.background.copy()
    lit = base.copy()
    lit[: H * 2 // 3] = np.clip(lit[: H * 2 // 3].astype(np.int32) * 2, 0, 255).astype(np.uint8)
    rule = ObstructionRule(keep_clear(), (W, H))
    out = []
    for i in range(61):
        t = i / 2
        scene.background = lit if t >= 8.0 else base
        out += rule.update(Frame("cam-1", t, MONDAY_9AM + t, scene.image(t)), [], Detections.empty())
    assert out == []
    assert rule.background.relit >= 1


def _shake(amplitude: int) -> Callable[[float], tuple[int, int]]:
    rng = np.random.default_rng(11)
    table = rng.integers(-amplitude, amplitude + 1, (1000, 2))
    return lambda t: (int(table[int(t * 10) % 1000, 0]), int(table[int(t * 10) % 1000, 1]))


@pytest.mark.parametrize("amplitude", [1, 3, 5])
def test_camera_shake_gives_nothing(amplitude: int) -> None:
    assert run(Scene(shift=_shake(amplitude)), 30.0).findings == []


def test_object_still_found_while_the_camera_shakes() -> None:
    result = run(Scene(things=[Thing(BOX, start=5.0)], shift=_shake(3)), 30.0)
    assert result.first_pts == pytest.approx(15.0)


@pytest.mark.parametrize("paint, expected", [(branch, "fallen_branch"), (grey_box, "obstruction")])
def test_vegetation_heuristic_types_the_finding(paint: Painter, expected: str) -> None:
    result = run(Scene(things=[Thing((100, 120, 200, 170), start=5.0, paint=paint)]), 20.0)
    assert result.first_pts == pytest.approx(15.0)
    assert result.types == {expected}
    signals = result.findings[0][1].evidence.signals
    if expected == "fallen_branch":
        assert signals["vegetation_score"] == 1.0
    else:
        assert signals["vegetation_score"] < 1.0 and signals["green_brown_share"] < 0.1


SUNDAY_ONLY = {"windows": [{"start": "08:00", "end": "18:00", "weekdays": ["sun"]}]}
MORNINGS = {"windows": [{"start": "08:00", "end": "10:00"}]}


@pytest.mark.parametrize("schedule, fires", [(None, True), (MORNINGS, True), (SUNDAY_ONLY, False)])
def test_schedule(schedule: dict | None, fires: bool) -> None:
    """The analyzer applies zone schedules (for every zone, rules.analyzer); the site time zone is
    tested in test_camera_analyzer_reads_keep_clear_schedules_in_the_site_time_zone."""
    from camera_config.schema import Camera
    from rules.analyzer import CameraAnalyzer

    camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "JD-0101", "analysis_fps": 2,
                                    "zones": [keep_clear(schedule=schedule).model_dump(mode="json")]})
    analyzer = CameraAnalyzer(camera, "Asia/Shanghai")
    scene = Scene(things=[Thing(BOX, start=5.0)])
    opened = []
    for i in range(61):
        t = i / 2
        events = analyzer.process(Frame("cam-1", t, MONDAY_9AM + t, scene.image(t)), scene.detections(t))
        opened += [e.stream_pts for e in events if e.event == "opened"]
    assert opened == ([15.0] if fires else [])


@pytest.mark.parametrize("ignore_score, opened", [(None, []), (0.3, [15.0])], ids=["default", "ignore-0.3"])
def test_a_weakly_detected_person_sitting_still_is_not_a_left_object(ignore_score: float | None,
                                                                     opened: list[float]) -> None:
    """A person sits in the zone from 5 s, detected at 0.25 only: under the 0.3 threshold no rule acts
    on them, but from ``detector.ignore_score`` (0.2) the analyzer still tells the background model
    they are a person. With the ignore score at 0.3 they become an obstruction at the limit."""
    from camera_config.schema import Camera
    from rules.analyzer import CameraAnalyzer

    detector = {} if ignore_score is None else {"ignore_score": ignore_score}
    camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "JD-0101", "analysis_fps": 2,
                                    "detector": detector, "zones": [keep_clear().model_dump(mode="json")]})
    analyzer = CameraAnalyzer(camera, "Asia/Shanghai")
    scene = Scene(covers=[Cover("person", BOX, start=5.0)])
    seen = []
    for i in range(61):
        t = i / 2
        weak = scene.detections(t)
        weak = Detections(weak.xyxy, np.full(len(weak), 0.25, np.float32), weak.class_id)
        events = analyzer.process(Frame("cam-1", t, MONDAY_9AM + t, scene.image(t)), weak)
        seen += [e.stream_pts for e in events if e.event == "opened"]
    assert analyzer.last is not None and analyzer.last.detections == 0  # no rule saw the person
    assert seen == opened


def test_two_rules_can_share_one_background() -> None:
    shared = DualBackground(long_term_s=60.0, short_term_s=2.0, min_area=0.005)
    left = ObstructionRule(keep_clear(id="left", polygon=[(0, 0.3), (0.5, 0.3), (0.5, 1), (0, 1)]), (W, H), shared)
    right = ObstructionRule(keep_clear(id="right", polygon=[(0.5, 0.3), (1, 0.3), (1, 1), (0.5, 1)]), (W, H), shared)
    scene = Scene(things=[Thing((40, 120, 90, 170), start=5.0), Thing((220, 120, 270, 170), start=5.0)])
    seen: dict[str, list[float]] = {"left": [], "right": []}
    for i in range(61):
        t = i / 2
        frame = Frame("cam-1", t, MONDAY_9AM + t, scene.image(t))
        for rule in (left, right):
            for f in rule.update(frame, [], scene.detections(t)):
                seen[f.zone_id].append(t)
                assert f.place[0] < 0.5 if f.zone_id == "left" else f.place[0] > 0.5
    assert seen["left"][0] == seen["right"][0] == 15.0


def test_wrong_frame_size_is_a_clear_error() -> None:
    rule = ObstructionRule(keep_clear(), (W, H))
    frame = Frame("cam-9", 0.0, MONDAY_9AM, np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match=r"zone 'road'.*cam-9.*100x100.*320x240"):
        rule.update(frame, [], Detections.empty())


def test_person_sitting_in_the_zone_and_missed_for_moments_gives_nothing() -> None:
    # a person sits 3..40 s; the detector misses them for 1-1.5 s now and then (as YOLOX does
    # when someone bends over): their silhouette is "static" then, but never seen for limit_s
    hidden = ((12.0, 13.0), (20.0, 21.5), (30.0, 31.0))
    scene = Scene(covers=[Cover("person", (150, 100, 185, 170), start=3.0, end=40.0)])
    detections = scene.detections

    def missing(t: float) -> Detections:
        return Detections.empty() if any(a <= t < b for a, b in hidden) else detections(t)

    scene.detections = missing  # type: ignore[method-assign]
    assert run(scene, 45.0).findings == []


def test_one_incident_through_the_camera_analyzer() -> None:
    from camera_config.schema import Camera
    from rules.analyzer import CameraAnalyzer

    camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "JD-0101", "analysis_fps": 2,
                                    "zones": [keep_clear().model_dump(mode="json")]})
    analyzer = CameraAnalyzer(camera, "Asia/Shanghai")
    scene = Scene(things=[Thing(BOX, start=5.0)],
                  covers=[Cover("person", (20, 90, 50, 170), start=0.0, end=30.0)])
    events = []
    for i in range(81):
        t = i / 2
        events += analyzer.process(Frame("cam-1", t, MONDAY_9AM + t, scene.image(t)), scene.detections(t))
    opened = [e for e in events if e.event == "opened"]
    assert [(e.type, e.stream_pts, e.started_at - MONDAY_9AM) for e in opened] == [("obstruction", 15.0, 5.0)]
    assert opened[0].zone_id == "road" and opened[0].location == pytest.approx((165 / W, 170 / H), abs=0.02)


@pytest.mark.parametrize(("site_tz", "fires"), [("UTC", True), ("Asia/Shanghai", False)])
def test_camera_analyzer_reads_keep_clear_schedules_in_the_site_time_zone(site_tz: str, fires: bool) -> None:
    """09:00 in Shanghai is 01:00 UTC: a 01:00-02:00 window is active only for a site that runs on UTC."""
    from camera_config.schema import Camera
    from rules.analyzer import CameraAnalyzer

    zone = keep_clear(schedule={"windows": [{"start": "01:00", "end": "02:00"}]})
    camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "JD-0101", "analysis_fps": 2,
                                    "zones": [zone.model_dump(mode="json")]})
    analyzer = CameraAnalyzer(camera, site_tz)
    scene = Scene(things=[Thing(BOX, start=5.0)])
    events = []
    for i in range(61):
        t = i / 2
        events += analyzer.process(Frame("cam-1", t, MONDAY_9AM + t, scene.image(t)), scene.detections(t))
    assert any(e.event == "opened" for e in events) is fires
