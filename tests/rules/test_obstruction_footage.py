"""The obstruction rule on real footage with ground truth (SBI2015 abandoned-object clips).

Candela_m1.10: a man puts a bag down by the sofa, then sits next to it for ~20 s and leaves.
HallAndMonitor: a man sets a briefcase down on a low box by the corridor wall and walks away while
another person walks up and down the corridor.

When the object became static, from the ground truth (per-frame masks: 0 background, 255
foreground, 170 unknown): the *object* is the largest connected patch of pixels that are
foreground in at least 95% of the last 100 frames (people move, the left object does not); it
*became static* at the first frame from which at least half of the object's pixels are
foreground in every later frame. That gives frame 60 (6.0 s) for Candela and 113 (11.3 s) for
HallAndMonitor, matching the dataset notes (~57 and ~113).

The clips are analysed at 1 and 2 fps (every 10th and 5th frame), with the real YOLOX-Nano
detector giving the person boxes the rule ignores, and the rule's findings go through the real
incident lifecycle. Time constants are seconds, so every rate must give the same answer (5 and
10 fps were checked by hand too — Candela opens at 18.6/18.7 s, Hall at 23.0 s, as at 1-2 fps —
and are left out only because the detector makes them slow on two cores).
Expected: exactly one incident, an obstruction, opened no earlier than the ground-truth time +
limit_s - 2 s and no later than + limit_s + 5 s, dated within 2 s of the ground-truth time, with
its evidence box on the object.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from footage_frames import sampled_frames

from camera_config.schema import KeepClearZone
from core.events import IncidentEvent
from core.types import Detections, Frame
from rules.findings import Finding
from rules.lifecycle import IncidentLifecycle, ZonePolicy
from rules.obstruction import ObstructionRule

pytestmark = pytest.mark.slow

CLIP_FPS = 10.0  # the clips' own rate (SBI2015 frames re-encoded at 10 fps)
ANALYSIS_FPS = (1.0, 2.0)
LIMIT_S = 10.0
WALL_BASE = 1_772_413_200.0  # 2026-03-02 09:00 Asia/Shanghai, a Monday


@dataclass(frozen=True)
class Clip:
    video: str
    groundtruth: str
    polygon: tuple[tuple[float, float], ...]
    """Keep-clear zone drawn over the floor around where the object is left (from viewed frames)."""
    min_area: float


CLIPS = {
    "candela": Clip("candela_m1_10", "candela_m1_10_groundtruth",
                    # the carpet in front of and beside the sofa the bag is put against
                    ((0.30, 0.50), (0.62, 0.50), (0.62, 0.78), (0.30, 0.78)), min_area=0.002),
    "hall": Clip("hall_and_monitor", "hall_and_monitor_groundtruth",
                 # the corridor floor and the foot of the left wall, where the briefcase is set down
                 ((0.22, 0.45), (0.62, 0.45), (0.80, 1.0), (0.05, 1.0)), min_area=0.001),
}


@dataclass(frozen=True)
class Truth:
    static_from_s: float
    box: tuple[int, int, int, int]


@functools.cache
def ground_truth(folder: Path) -> Truth:
    masks = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(folder.glob("gt*.png"))])
    fg = masks == 255
    persistent = (fg[-100:].mean(axis=0) >= 0.95).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(persistent)
    assert n > 1, f"{folder}: no persistent foreground in the ground truth"
    label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    obj = labels == label
    share = fg[:, obj].mean(axis=1)
    below = np.nonzero(share < 0.5)[0]
    first = int(below.max()) + 1 if below.size else 0
    x, y, w, h = (int(v) for v in stats[label, :4])
    return Truth(first / CLIP_FPS, (x, y, x + w, y + h))


def frames(path: Path, fps: float) -> Iterator[tuple[int, Frame]]:
    """(frame index, frame) of the clip sampled at ``fps``."""
    return sampled_frames(path, fps, "lobby-cam", WALL_BASE)


@dataclass
class Outcome:
    truth: Truth
    findings: list[tuple[float, Finding]]
    events: list[IncidentEvent]
    duration_s: float


@pytest.fixture(scope="module")
def person_boxes(yolox_detector):  # type: ignore[no-untyped-def]
    """Detections per (clip, frame index), each frame detected once whatever the rates."""
    cache: dict[tuple[str, int], Detections] = {}

    def get(clip: str, index: int, frame: Frame) -> Detections:
        if (clip, index) not in cache:
            cache[(clip, index)] = yolox_detector.detect([frame.image])[0]
        return cache[(clip, index)]

    return get


@pytest.fixture(scope="module", params=[(c, fps) for fps in ANALYSIS_FPS for c in sorted(CLIPS)],
                ids=lambda p: f"{p[0]}-{p[1]:g}fps")
def outcome(request, asset_path, person_boxes) -> Outcome:  # type: ignore[no-untyped-def]
    name, fps = request.param
    clip = CLIPS[name]
    truth = ground_truth(asset_path(clip.groundtruth))
    video = asset_path(clip.video)
    _, first = next(frames(video, fps))
    zone = KeepClearZone(id="floor", type="keep_clear", polygon=clip.polygon, limit_s=LIMIT_S,
                         min_area=clip.min_area)
    rule = ObstructionRule(zone, (first.width, first.height))
    lifecycle = IncidentLifecycle("lobby-cam", "JD-0101", {zone.id: ZonePolicy.of(zone)})
    found: list[tuple[float, Finding]] = []
    events: list[IncidentEvent] = []
    pts = 0.0
    for index, frame in frames(video, fps):
        detections = person_boxes(name, index, frame)
        findings = rule.update(frame, [], detections)
        found.extend((frame.pts, f) for f in findings)
        events.extend(lifecycle.step(frame, findings))
        pts = frame.pts
    return Outcome(truth, found, events, pts)


def test_ground_truth_static_time_is_where_the_dataset_says(outcome: Outcome) -> None:
    # the dataset notes: bag from frame ~57 (Candela), briefcase from frame ~113 (Hall)
    assert 5.5 <= outcome.truth.static_from_s <= 6.5 or outcome.truth.static_from_s == pytest.approx(11.3)
    # and the clip runs long enough after it for the rule to have a chance
    assert outcome.duration_s >= outcome.truth.static_from_s + LIMIT_S + 5


def test_exactly_one_obstruction_incident(outcome: Outcome) -> None:
    opened = [e for e in outcome.events if e.event == "opened"]
    assert len(opened) == 1, [(e.stream_pts, e.type, e.location) for e in opened]
    assert opened[0].type == "obstruction"
    assert {f.type for _, f in outcome.findings} == {"obstruction"}


def test_incident_opens_after_the_limit_and_within_five_seconds_of_it(outcome: Outcome) -> None:
    t_static = outcome.truth.static_from_s
    first_pts = outcome.findings[0][0]
    assert t_static + LIMIT_S - 2.0 <= first_pts <= t_static + LIMIT_S + 5.0, (first_pts, t_static)
    opened = next(e for e in outcome.events if e.event == "opened")
    assert opened.stream_pts == first_pts
    # dated by when the object arrived, not by when the rule fired
    assert opened.started_at - WALL_BASE == pytest.approx(t_static, abs=2.0)


def test_evidence_box_is_on_the_object(outcome: Outcome) -> None:
    gx1, gy1, gx2, gy2 = outcome.truth.box
    for _, finding in outcome.findings:
        (box,) = finding.evidence.boxes
        x1, y1, x2, y2 = box.xyxy
        overlap_x = min(x2, gx2) - max(x1, gx1)
        overlap_y = min(y2, gy2) - max(y1, gy1)
        assert overlap_x > 0 and overlap_y > 0, (box.xyxy, outcome.truth.box)
        # the region is the object, not the object plus the person who sat beside it
        assert (x2 - x1) * (y2 - y1) <= 3 * max((gx2 - gx1) * (gy2 - gy1), 400)


# Street clips in which nothing is left behind: parked cars stand at the kerb from the first frame,
# traffic and cyclists pass, trees overhang the road. A keep_clear zone over the whole ground with
# the same 10 s limit must stay silent, and the model must not have had to throw itself away.
STREETS = ["vehicle_counting_input_video", "car_detection", "bgslibrary_video02"]


@pytest.mark.parametrize("name", STREETS)
def test_street_without_left_objects_gives_nothing(name: str, asset_path, yolox_detector) -> None:  # type: ignore[no-untyped-def]
    path = asset_path(name)
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    fps = cap.get(cv2.CAP_PROP_FPS)
    step = max(1, round(fps / 2.0))
    zone = KeepClearZone(id="ground", type="keep_clear", polygon=((0, 0.2), (1, 0.2), (1, 1), (0, 1)),
                         limit_s=LIMIT_S)
    rule: ObstructionRule | None = None
    findings: list[Finding] = []
    index = 0
    try:
        while cap.grab():
            if index % step == 0:
                ok, image = cap.retrieve()
                assert ok
                pts = index / fps
                rule = rule or ObstructionRule(zone, (image.shape[1], image.shape[0]))
                frame = Frame("street", pts, WALL_BASE + pts, image)
                findings += rule.update(frame, [], yolox_detector.detect([image])[0])
            index += 1
    finally:
        cap.release()
    assert rule is not None and index / fps > LIMIT_S + 5
    assert findings == [], [(f.started_pts, f.evidence.boxes[0].xyxy) for f in findings]
    assert rule.background.global_changes == 0


# A fallen branch and a slab of debris on the real street: from 5 s on, a patch cut from the
# clip's own first frame is pasted onto the carriageway (80x70 px of the overhanging tree's
# foliage, or 60x60 px of the concrete pavement) while the real traffic goes on around it. The
# zone is the carriageway. Expected: one incident each, typed by the vegetation heuristic.
ROAD = ((0.33, 0.36), (0.62, 0.36), (1.0, 0.75), (1.0, 1.0), (0.4, 1.0))
PATCHES = {"fallen_branch": (40, 40, 120, 110), "obstruction": (170, 270, 230, 330)}


# (the pavement patch at (300, 250) is first found by its upper part and grows: one incident still)
@pytest.mark.parametrize("kind, where", [("fallen_branch", (420, 270)), ("obstruction", (300, 250))])
def test_real_foliage_is_a_fallen_branch_and_pavement_an_obstruction(
        kind: str, where: tuple[int, int], asset_path, yolox_detector) -> None:  # type: ignore[no-untyped-def]
    path = asset_path("vehicle_counting_input_video")
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    fps = cap.get(cv2.CAP_PROP_FPS)
    step = max(1, round(fps / 2.0))
    zone = KeepClearZone(id="road", type="keep_clear", polygon=ROAD, limit_s=LIMIT_S)
    rule: ObstructionRule | None = None
    lifecycle = IncidentLifecycle("street", "JD-0101", {zone.id: ZonePolicy.of(zone)})
    events: list[IncidentEvent] = []
    patch = None
    index = 0
    try:
        while cap.grab():
            if index % step == 0:
                ok, image = cap.retrieve()
                assert ok
                if patch is None:
                    x1, y1, x2, y2 = PATCHES[kind]
                    patch = image[y1:y2, x1:x2].copy()
                pts = index / fps
                if pts >= 5.0:
                    x, y = where
                    image[y:y + patch.shape[0], x:x + patch.shape[1]] = patch
                rule = rule or ObstructionRule(zone, (image.shape[1], image.shape[0]))
                frame = Frame("street", pts, WALL_BASE + pts, image)
                events += lifecycle.step(frame, rule.update(frame, [], yolox_detector.detect([image])[0]))
            index += 1
    finally:
        cap.release()
    opened = [e for e in events if e.event == "opened"]
    assert [e.type for e in opened] == [kind]
    assert 5.0 + LIMIT_S <= (opened[0].stream_pts or 0) <= 5.0 + LIMIT_S + 5.0
    assert opened[0].started_at - WALL_BASE == pytest.approx(5.0, abs=1.0)
    (box,) = opened[0].evidence.boxes
    assert box.xyxy[0] == pytest.approx(where[0], abs=6) and box.xyxy[1] == pytest.approx(where[1], abs=6)
