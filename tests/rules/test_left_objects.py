"""Real left objects (MANIFEST "Added 2026-12-02"): the obstruction rule on i-LIDS AVSS 2007 "AB
Easy", on ABODA video1, and the background model on the SOC test triplets.

The clips are analysed at 2 fps with the real YOLOX-Nano detector giving the people the rule
ignores, and the findings go through the real incident lifecycle. Zones are drawn over the floor
from viewed frames (see the comments); times come from the manifest, checked on frames.
Figures (open / close times, IoU) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from footage_frames import sampled_frames

from camera_config.schema import DetectorChoice, KeepClearZone
from core.coco import CLASS_ID
from core.events import IncidentEvent
from core.types import Detections, Frame
from rules.background import DualBackground
from rules.lifecycle import IncidentLifecycle, ZonePolicy
from rules.obstruction import ObstructionRule
from rules.scores import ScoreThresholds

pytestmark = pytest.mark.slow

ANALYSIS_FPS = 2.0
LIMIT_S = 15.0
GRACE_S = 10.0  # the AVSS clip ends 19 s after the suitcase has gone: the default 30 s grace would not show
WALL_BASE = 1_772_413_200.0  # 2026-03-02 09:00 Asia/Shanghai, a Monday


@dataclass(frozen=True)
class Clip:
    asset: str
    polygon: tuple[tuple[float, float], ...]
    object_box: tuple[float, float, float, float]
    """The left object's box, normalised, read off frames (x1, y1, x2, y2)."""


CLIPS = {
    # the platform floor from the yellow edge line to the benches, below the far end where the
    # trains' fronts and the tunnel mouth are (y < 0.24); the suitcase stands at the edge, left
    "avss": Clip("avss2007_ab_easy", ((0.02, 0.50), (0.25, 0.24), (0.60, 0.24), (0.70, 0.45), (0.72, 1.0),
                                      (0.02, 1.0)), (0.09, 0.42, 0.21, 0.69)),
    # the corridor floor below the walls, down to the bottom of the picture (black bars below 0.87)
    "aboda": Clip("aboda_video1_cut", ((0.0, 0.72), (0.30, 0.5), (0.65, 0.38), (1.0, 0.38), (1.0, 0.87),
                                       (0.0, 0.87)), (0.20, 0.67, 0.30, 0.79)),
}


def frames(path: Path, fps: float) -> Iterator[Frame]:
    return (frame for _, frame in sampled_frames(path, fps, "left-cam", WALL_BASE))


@dataclass
class Outcome:
    events: list[IncidentEvent]
    duration_s: float

    def on_object(self, box: tuple[float, float, float, float]) -> list[IncidentEvent]:
        """Events of incidents whose opening evidence box (normalised) overlaps ``box``."""
        ids = {e.incident_id for e in self.events if e.event == "opened" and _overlaps(e, box)}
        return [e for e in self.events if e.incident_id in ids]


def _overlaps(event: IncidentEvent, box: tuple[float, float, float, float]) -> bool:
    w, h = event.evidence.frame_size or (1, 1)
    x1, y1, x2, y2 = event.evidence.boxes[0].xyxy
    return min(x2 / w, box[2]) > max(x1 / w, box[0]) and min(y2 / h, box[3]) > max(y1 / h, box[1])


class Seen:
    """The detections of a picture as the analyzer hands them on with the default camera detector
    choice: the model run at its lowest score, the thresholded ones (what a rule acts on) and the weak
    ones down to ``detector.ignore_score`` (what the background model is told are people)."""

    def __init__(self) -> None:
        from models.factory import load_detector

        choice = DetectorChoice()
        self.thresholds = ScoreThresholds(choice)
        self.detector = load_detector(choice.model, score_threshold=choice.lowest_score)

    def __call__(self, image: np.ndarray) -> tuple[Detections, Detections]:
        raw = self.detector.detect([image])[0]
        return self.thresholds(raw), self.thresholds.weak(raw)


@pytest.fixture(scope="module")
def seen() -> Seen:
    return Seen()


def fed(rule: ObstructionRule, frame: Frame, seen: Seen, image: np.ndarray | None = None) -> list:
    """One analysed frame into ``rule`` as the analyzer feeds it (detections of ``image``, default the frame's)."""
    detections, rule.weak_detections = seen(frame.image if image is None else image)
    return rule.update(frame, [], detections)


@pytest.fixture(scope="module")
def outcome(asset_path, seen: Seen) -> Callable[[str], Outcome]:
    """``outcome(name)``: the clip run through rule and lifecycle, once per module."""

    @functools.cache
    def run(name: str) -> Outcome:
        clip = CLIPS[name]
        zone = KeepClearZone(id="floor", type="keep_clear", polygon=clip.polygon, limit_s=LIMIT_S,
                             close_grace_s=GRACE_S)
        rule: ObstructionRule | None = None
        lifecycle = IncidentLifecycle("left-cam", "JD-0101", {zone.id: ZonePolicy.of(zone)})
        events: list[IncidentEvent] = []
        pts = 0.0
        for frame in frames(asset_path(clip.asset), ANALYSIS_FPS):
            rule = rule or ObstructionRule(zone, (frame.width, frame.height))
            events += lifecycle.step(frame, fed(rule, frame, seen))
            pts = frame.pts
        for e in events:
            print(f"{name}: {e.stream_pts:7.1f} s {e.event:8s} {e.type} at {e.location} box {e.evidence.boxes[0].xyxy}")
        return Outcome(events, pts)

    return run


def _opened(events: list[IncidentEvent]) -> list[IncidentEvent]:
    return [e for e in events if e.event == "opened"]


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_one_obstruction_for_the_left_object(outcome: Callable[[str], Outcome], name: str) -> None:
    out = outcome(name)
    mine = out.on_object(CLIPS[name].object_box)
    opened = _opened(mine)
    assert [e.type for e in opened] == ["obstruction"], [(e.stream_pts, e.location) for e in opened]
    assert {e.type for e in mine} == {"obstruction"}


def test_avss_suitcase_opens_in_time_stays_through_occlusion_and_closes_after_it_goes(
        outcome: Callable[[str], Outcome]) -> None:
    out = outcome("avss")
    mine = out.on_object(CLIPS["avss"].object_box)
    (opened,) = _opened(mine)
    opened_s = opened.stream_pts or 0.0
    # set down ~36-44 s; the owner walks away ~79-85 s
    assert 44.0 + LIMIT_S <= opened_s <= 85.0 + LIMIT_S + 5.0, opened_s
    closed = [e for e in mine if e.event == "closed"]
    assert len(closed) == 1, "one incident from opening to closing, through the trains and people of 92-124 s"
    closed_s = closed[0].stream_pts or 0.0
    print(f"avss suitcase: opened {opened_s:.1f} s, closed {closed_s:.1f} s")
    # wheeled away ~155-165 s
    assert 155.0 <= closed_s <= 165.0 + GRACE_S + 10.0, closed_s


def test_aboda_backpack_opens_within_limit_of_being_alone(outcome: Callable[[str], Outcome]) -> None:
    out = outcome("aboda")
    (opened,) = _opened(out.on_object(CLIPS["aboda"].object_box))
    opened_s = opened.stream_pts or 0.0
    print(f"aboda backpack: opened {opened_s:.1f} s")
    # set down ~9-13 s, alone from ~15 s
    assert 9.0 + LIMIT_S <= opened_s <= 15.0 + LIMIT_S + 5.0, opened_s


def test_aboda_passers_by_give_nothing(outcome: Callable[[str], Outcome]) -> None:
    out = outcome("aboda")
    mine = {e.incident_id for e in out.on_object(CLIPS["aboda"].object_box)}
    assert [e for e in _opened(out.events) if e.incident_id not in mine] == []


def test_avss_nothing_else_fires_on_the_platform(outcome: Callable[[str], Outcome]) -> None:
    out = outcome("avss")
    mine = {e.incident_id for e in out.on_object(CLIPS["avss"].object_box)}
    assert [(e.stream_pts, e.location) for e in _opened(out.events) if e.incident_id not in mine] == []


SOC = ["EPFL", "PETS", "avss", "cantata"]
SOC_FILES = {"EPFL": ("EPFL_bkg01005", "EPFL_frame01005", "EPFL_mask01005"),
             "PETS": ("PETS_bkg02140", "PETS_frame02140", "PETS_mask02140"),
             "avss": ("avss-bkg02720", "avss-frame02720", "avss-mask02720"),
             "cantata": ("cantata-bkg00355", "cantata-frame00355", "cantata-mask00355")}


@dataclass(frozen=True)
class SocMasks:
    objects: float
    """IoU of the static mask: the pixels of the static regions the model reports (its objects:
    specks under ``min_area`` and changes it learns as light or ghosts are not objects)."""
    pixels: float
    """IoU of every static-foreground pixel (``DualBackground.static_mask``, no area filter)."""
    best_piece: float
    """IoU of the one reported region that matches the object best."""


def soc_iou(folder: Path, name: str, seen: Seen, low_contrast: bool = False) -> SocMasks:
    """Learn the background image for 60 s at 2 fps, hold the frame for 20 s (its people and vehicles
    given as ignore boxes as the analyzer gives them: a keep_clear zone's default ``ignore_classes``,
    down to ``detector.ignore_score``), and compare the static masks with the ground truth. The held
    frames hold other static changes too: people the detector misses, a train, things moved."""
    read = [cv2.imread(str(folder / f"{n}.png")) for n in SOC_FILES[name]]
    assert all(r is not None for r in read), f"{folder}: {name} triplet unreadable"
    bkg, frm, msk = (np.asarray(r, np.uint8) for r in read)
    zone = KeepClearZone(id="floor", type="keep_clear", polygon=((0, 0), (1, 0), (1, 1), (0, 1)))
    ignore_ids = [CLASS_ID[c] for c in zone.ignore_classes]
    weak = seen(frm)[1]
    people = [tuple(float(v) for v in xyxy) for xyxy, c in zip(weak.xyxy, weak.class_id, strict=True)
              if int(c) in ignore_ids]
    model = DualBackground(min_area=0.0005, low_contrast=low_contrast)
    pts = 0.0
    while pts < 60.0:
        model.update(bkg, pts)
        pts += 0.5
    regions = []
    while pts < 80.0:
        regions = model.update(frm, pts, people)
        pts += 0.5
    assert model.static_mask is not None
    truth = msk[..., 0] > 127

    def iou(pix: np.ndarray) -> float:
        return float((pix & truth).sum() / max(1, (pix | truth).sum()))

    def painted(chosen: list) -> np.ndarray:
        out = np.zeros(truth.shape, bool)
        for r in chosen:
            x1, y1 = math.floor(r.xyxy[0]), math.floor(r.xyxy[1])
            out[y1:y1 + r.mask.shape[0], x1:x1 + r.mask.shape[1]] |= r.mask
        return out

    pixels = cv2.resize(model.static_mask.astype(np.uint8), (msk.shape[1], msk.shape[0]),
                        interpolation=cv2.INTER_NEAREST) > 0
    return SocMasks(iou(painted(regions)), iou(pixels), max((iou(painted([r])) for r in regions), default=0.0))


@pytest.fixture(scope="module")
def soc(asset_path, seen: Seen) -> dict[tuple[str, bool], SocMasks]:
    folder = asset_path("soc_test")
    out = {(name, lc): soc_iou(folder, name, seen, lc) for name in SOC for lc in (False, True)}
    for lc in (False, True):
        print(f"SOC IoU ({'low_contrast' if lc else 'grey'} model):",
              {n: {k: round(v, 3) for k, v in vars(out[n, lc]).items()} for n in SOC})
    return out


def test_soc_best_static_object_matches_the_ground_truth(soc) -> None:
    best = {name: soc[name, False].best_piece for name in SOC}
    assert sum(v >= 0.5 for v in best.values()) >= 3, best


@pytest.mark.parametrize("low_contrast", [False, True], ids=["grey", "low_contrast"])
def test_soc_static_mask_matches_the_ground_truth(low_contrast: bool, soc) -> None:
    """Measured 2026-12-02 (work width 320), objects / every pixel: grey EPFL 0.78 / 0.76, PETS
    0.71 / 0.36, avss 0.04 / 0.04, cantata 0.53 / 0.53; low_contrast EPFL 0.83 / 0.80, PETS 0.44 /
    0.24, avss 0.03 / 0.03, cantata 0.65 / 0.57. The avss frame fails: a train has come in
    (scored 0.29 as a train, its box would hide the bag), its reflection on the glossy floor and a head
    cut off by the picture's edge (person 0.12) stay as objects there."""
    ious = {name: soc[name, low_contrast].objects for name in SOC}
    if low_contrast:
        # the low-contrast model finds more of each object and more of every other change
        assert sum(v >= 0.5 for v in ious.values()) >= 2, ious
    else:
        assert sum(v >= 0.5 for v in ious.values()) >= 3, ious


# Low contrast, from real footage: in ABODA video1 the backpack's box (124..196 x 318..382 px) is
# blended towards the clip's first frame (no backpack there yet): pixel = first + alpha x (frame -
# first), in every frame, so the backpack, and anyone passing through the box, stands out alpha
# times as much. The contrast is measured over the backpack's own pixels (those differing by over
# 25 grey levels from the first frame at full contrast, at 30 s, when it lies alone).
LOW_BOX = (124, 318, 196, 382)


def low_contrast_replay(asset_path, seen: Seen, alpha: float,
                        low_contrast: bool) -> tuple[float, list[IncidentEvent]]:
    clip = CLIPS["aboda"]
    zone = KeepClearZone(id="floor", type="keep_clear", polygon=clip.polygon, limit_s=LIMIT_S,
                         low_contrast=low_contrast)  # the zone's own setting, as a site file gives it
    rule: ObstructionRule | None = None
    lifecycle = IncidentLifecycle("left-cam", "JD-0101", {zone.id: ZonePolicy.of(zone)})
    events: list[IncidentEvent] = []
    first: np.ndarray | None = None
    contrast = math.nan
    x1, y1, x2, y2 = LOW_BOX
    for frame in frames(asset_path(clip.asset), ANALYSIS_FPS):
        image = frame.image
        # people are detected on the real picture: the fading stands in for a fainter object, and
        # faded halves of the people standing by the backpack would be a detector test instead
        detections, weak = seen(image)
        if first is None:
            first = image.astype(np.float32)
        full = image[y1:y2, x1:x2].astype(np.float32)
        empty = first[y1:y2, x1:x2]
        image[y1:y2, x1:x2] = np.clip(empty + alpha * (full - empty), 0, 255).astype(np.uint8)
        if math.isnan(contrast) and frame.pts >= 30.0:
            grey = [cv2.cvtColor(np.clip(a, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
                    for a in (full, empty, image[y1:y2, x1:x2].astype(np.float32))]
            backpack = np.abs(grey[0] - grey[1]) > 25
            contrast = float(np.abs(grey[2] - grey[1])[backpack].mean())
        rule = rule or ObstructionRule(zone, (frame.width, frame.height))
        assert rule.background.low_contrast is low_contrast
        rule.weak_detections = weak
        events += lifecycle.step(frame, rule.update(frame, [], detections))
    return contrast, events


@pytest.mark.parametrize("alpha, most, low_contrast", [
    # the grey model (per-pixel thresholds down to MIN_DIFF 18, which the AVSS platform needs)
    pytest.param(0.17, 23.0, False, id="grey-22.7"),
    # the low-contrast model: colour, texture, a floor of LOW_DIFF 10 away from people, evidence
    pytest.param(0.14, 20.0, True, id="low_contrast-18.8"),
    pytest.param(0.12, 17.0, True, id="low_contrast-16.2"),
])
def test_a_low_contrast_real_object_still_fires(alpha: float, most: float, low_contrast: bool, asset_path,
                                                seen: Seen) -> None:
    contrast, events = low_contrast_replay(asset_path, seen, alpha, low_contrast)
    print(f"aboda backpack at alpha {alpha}: mean contrast {contrast:.1f} grey levels")
    assert contrast <= most
    opened = [e for e in events if e.event == "opened"]
    assert [e.type for e in opened] == ["obstruction"], [(e.stream_pts, e.location) for e in opened]
    assert _overlaps(opened[0], CLIPS["aboda"].object_box)
    # set down ~9-13 s, alone from ~15 s: the faint backpack is found as soon as the people have gone
    assert 9.0 + LIMIT_S <= (opened[0].stream_pts or 0.0) <= 15.0 + LIMIT_S + 5.0
    # the evidence says how faint it was (working image, against the long-term background)
    signals = opened[0].evidence.signals
    print(f"evidence {signals}")
    assert 0 < signals["contrast"] <= most + 5
    if low_contrast:
        assert signals["faint_share"] > 0, "some of the backpack is found only by the low-contrast cues"


def test_the_grey_model_misses_the_faintest_backpack(asset_path, seen: Seen) -> None:
    """What the low-contrast model adds: at a mean 18.8 grey levels the grey model finds nothing."""
    contrast, events = low_contrast_replay(asset_path, seen, 0.14, low_contrast=False)
    assert contrast <= 20.0
    assert [e for e in events if e.event == "opened"] == []
