"""DualBackground on its own: time in seconds, coordinates, ghosts, missed people, bad input."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.background import DualBackground, StaticRegion, learning_rate


def scene(w: int = 320, h: int = 240, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = cv2.GaussianBlur(rng.uniform(70, 160, (h, w)).astype(np.float32), (0, 0), 1.2)
    img = np.dstack([grey] * 3)
    cv2.rectangle(img, (0, 0), (w, h // 4), (150, 145, 140), -1)
    cv2.rectangle(img, (0, h // 4), (w, h // 4 + 8), (70, 70, 70), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def with_box(img: np.ndarray, box: tuple[int, int, int, int], colour: int = 40) -> np.ndarray:
    out = img.copy()
    x1, y1, x2, y2 = box
    out[y1:y2, x1:x2] = colour
    return out


def model(**kw: float) -> DualBackground:
    args: dict[str, float] = {"long_term_s": 60.0, "short_term_s": 2.0, "min_area": 0.005}
    args.update(kw)
    return DualBackground(**args)  # type: ignore[arg-type]


def feed(bg: DualBackground, image_at, duration_s: float, fps: float = 2.0,  # type: ignore[no-untyped-def]
         boxes_at=lambda t: ()) -> list[tuple[float, list[StaticRegion]]]:
    out = []
    for i in range(math.floor(duration_s * fps) + 1):
        t = round(i / fps, 6)
        out.append((t, bg.update(image_at(t), t, boxes_at(t))))
    return out


def test_learning_rate_is_in_seconds() -> None:
    assert learning_rate(0.0, 5.0) == 0.0
    assert learning_rate(-1.0, 5.0) == 0.0
    assert learning_rate(5.0, 5.0) == pytest.approx(1 - math.exp(-1))
    assert learning_rate(1e6, 5.0) == pytest.approx(1.0)


@given(dt=st.floats(0.01, 100), tau=st.floats(0.1, 1000), parts=st.integers(2, 10))
def test_many_short_steps_learn_as_much_as_one_long_step(dt: float, tau: float, parts: int) -> None:
    # what a model keeps of the old value after ``dt`` must not depend on how many frames came
    kept_one = 1 - learning_rate(dt, tau)
    kept_many = (1 - learning_rate(dt / parts, tau)) ** parts
    assert kept_many == pytest.approx(kept_one, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("fps", [1.0, 2.0, 5.0])
def test_a_new_object_becomes_static_after_the_same_seconds_at_any_rate(fps: float) -> None:
    # contrast ~75 grey levels, threshold 30, short-term tau 2 s: absorbed after 2*ln(75/30) = 1.8 s
    base = scene()
    obj = with_box(base, (140, 120, 190, 170))
    run = feed(model(), lambda t: obj if t >= 5.0 else base, 12.0, fps)
    first = next(t for t, regions in run if regions)
    assert 5.0 + 1.0 <= first <= 5.0 + 3.0
    (region,) = next(regions for _, regions in run if regions)
    assert region.static_since_pts == 5.0


def test_regions_are_in_input_pixels_with_their_own_mask() -> None:
    # 640x480 input is modelled at 320x240; the region comes back in input coordinates
    base = scene(640, 480)
    obj = with_box(base, (300, 240, 400, 340))
    (_, regions) = feed(model(), lambda t: obj if t >= 2.0 else base, 10.0)[-1]
    (region,) = regions
    x1, y1, x2, y2 = region.xyxy
    assert (x1, y1, x2, y2) == pytest.approx((300, 240, 400, 340), abs=4)
    assert region.ground_point == pytest.approx((350, 340), abs=4)
    assert region.mask is not None and region.mask.shape == (y2 - y1, x2 - x1)
    assert region.mask.mean() > 0.8
    assert region.area_frac == pytest.approx(100 * 100 / (640 * 480), rel=0.25)
    assert region.seen_s == pytest.approx(8.0)


def test_static_mask_is_the_occupancy_at_working_resolution() -> None:
    bg = model()
    base = scene(640, 480)
    obj = with_box(base, (300, 240, 400, 340))
    feed(bg, lambda t: obj if t >= 2.0 else base, 10.0)
    assert bg.work_size == (320, 240)
    mask = bg.static_mask
    assert mask is not None and mask.shape == (240, 320)
    assert mask[125:165, 155:195].mean() > 0.9 and mask[:100].sum() == 0


def test_a_repeated_pts_returns_the_same_regions_without_learning_twice() -> None:
    bg = model()
    base = scene()
    obj = with_box(base, (140, 120, 190, 170))
    feed(bg, lambda t: obj if t >= 2.0 else base, 10.0)
    before = bg.update(obj, 10.0)
    again = bg.update(base, 10.0)  # a second rule asking about the same frame
    assert again == before and len(again) == 1


def test_pts_going_back_restarts_the_models() -> None:
    bg = model()
    base = scene()
    obj = with_box(base, (140, 120, 190, 170))
    feed(bg, lambda t: obj if t >= 2.0 else base, 10.0)
    assert bg.update(obj, 1.0) == []  # stream reconnected: the object is the new background
    assert all(not regions for _, regions in feed(bg, lambda t: obj, 10.0)[1:])


def test_object_in_the_first_frame_that_leaves_is_a_ghost_not_an_object() -> None:
    bg = model()
    base = scene()
    parked = with_box(base, (140, 120, 190, 170))
    run = feed(bg, lambda t: parked if t < 3.0 else base, 30.0)
    assert all(not regions for _, regions in run)
    assert bg.ghosts_healed >= 1


def test_person_missed_by_the_detector_for_a_moment_has_not_been_seen_static() -> None:
    # a person stands 2..30 s; the detector misses them 10..11 s and 20..21.5 s: their silhouette
    # shows up as "static" then, with an old onset but seen only while missed (2.5 s in all)
    bg = model()
    base = scene()
    person = with_box(base, (150, 80, 180, 170), colour=200)

    def boxes(t: float) -> list[tuple[float, float, float, float]]:
        if t < 2.0 or 10.0 <= t < 11.0 or 20.0 <= t < 21.5:
            return []
        return [(150.0, 80.0, 180.0, 170.0)]

    run = feed(bg, lambda t: person if t >= 2.0 else base, 30.0, boxes_at=boxes)
    seen = [r.seen_s for _, regions in run for r in regions]
    assert seen, "the missed frames should show the silhouette"
    assert max(seen) <= 2.5 + 0.5  # the missed time, give or take one frame interval
    assert all(r.static_since_pts == 2.0 for _, regions in run for r in regions)


def test_region_under_an_ignore_box_is_not_reported() -> None:
    bg = model()
    base = scene()
    obj = with_box(base, (140, 120, 190, 170))
    run = feed(bg, lambda t: obj if t >= 2.0 else base, 12.0, boxes_at=lambda t: [(130, 110, 200, 180)])
    assert all(not regions for _, regions in run)


def test_grey_images_are_accepted() -> None:
    base = cv2.cvtColor(scene(), cv2.COLOR_BGR2GRAY)
    obj = base.copy()
    obj[120:170, 140:190] = 40
    (_, regions) = feed(model(), lambda t: obj if t >= 2.0 else base, 10.0)[-1]
    assert len(regions) == 1


@pytest.mark.parametrize("kw, match", [
    ({"short_term_s": 60.0, "long_term_s": 60.0}, "short_term_s < long_term_s"),
    ({"diff_threshold": 0.0}, "diff_threshold"),
    ({"min_area": 1.5}, "min_area"),
    ({"work_width": 8}, "work_width"),
    ({"global_change_frac": 0.0}, "global_change_frac"),
])
def test_bad_parameters_are_named(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        model(**kw)


def test_bad_update_input_is_named() -> None:
    bg = model()
    img = scene()
    with pytest.raises(ValueError, match=r"ignore_boxes\[1\].*4 finite numbers"):
        bg.update(img, 0.0, [(1, 2, 3, 4), (1, 2, 3)])
    with pytest.raises(ValueError, match="pts must be finite"):
        bg.update(img, math.nan)
    with pytest.raises(ValueError, match=r"HxW or HxWx3 image, got shape \(10,\)"):
        bg.update(np.zeros(10, np.uint8), 0.0)


@pytest.mark.parametrize("gap, pieces", [(8, 1), (40, 2)])
def test_pieces_close_together_are_one_object(gap: int, pieces: int) -> None:
    # two halves of one object (a branch with a gap between its leaves; wider than the 5x5
    # closing bridges) vs two separate objects
    base = scene()
    obj = with_box(with_box(base, (100, 120, 130, 170)), (130 + gap, 120, 160 + gap, 170))
    (_, regions) = feed(model(), lambda t: obj if t >= 2.0 else base, 10.0)[-1]
    assert len(regions) == pieces
    if pieces == 1:
        assert regions[0].xyxy == pytest.approx((100, 120, 160 + gap, 170), abs=3)


def test_models_of_one_camera_prepare_each_frame_once_and_still_see_the_same() -> None:
    """Two models fed the same arrays share the grey working image (converted once per frame, kept
    read-only) and find exactly what each finds on its own; a copy of a frame is converted anew."""
    from rules import background

    calls = []
    convert = background.cv2.cvtColor

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return convert(*args, **kwargs)

    base = scene(640, 480)
    frames = [base if t < 3 else with_box(base, (200, 300, 280, 400)) for t in range(20)]
    shared_a, shared_b, alone = model(), model(min_area=0.01), model(min_area=0.01)
    try:
        background.cv2.cvtColor = counting
        out_a, out_b = [], []
        for t, frame in enumerate(frames):
            out_a.append(shared_a.update(frame, t * 0.5))
            out_b.append(shared_b.update(frame, t * 0.5))
        assert len(calls) == len({id(f) for f in frames})  # once per distinct picture, not per model
        prepared = background._prepared(frames[-1], (320, 240))
        assert prepared is background._prepared(frames[-1], (320, 240)) and not prepared.flags.writeable
        assert background._prepared(frames[-1].copy(), (320, 240)) is not prepared
    finally:
        background.cv2.cvtColor = convert
    out_alone = [alone.update(frame.copy(), t * 0.5) for t, frame in enumerate(frames)]

    def facts(frames_out: list[list[StaticRegion]]) -> list[list[tuple[object, ...]]]:
        return [[(r.xyxy, r.area_frac, r.static_since_pts, r.seen_s, None if r.mask is None else r.mask.tolist())
                 for r in regions] for regions in frames_out]
    assert facts(out_b) == facts(out_alone) and out_a[-1] and out_b[-1]


# ---- low_contrast: colour, texture, a lower grey floor away from people, accumulated evidence ----

def flat(w: int = 320, h: int = 240, bgr: tuple[int, int, int] = (120, 120, 120)) -> np.ndarray:
    return np.full((h, w, 3), bgr, np.uint8)


def painted(img: np.ndarray, box: tuple[int, int, int, int], bgr: tuple[int, int, int]) -> np.ndarray:
    out = img.copy()
    x1, y1, x2, y2 = box
    out[y1:y2, x1:x2] = bgr
    return out


@pytest.mark.parametrize("low_contrast, found", [(False, 0), (True, 1)])
def test_a_faint_object_away_from_people_is_found_only_by_the_low_contrast_model(
        low_contrast: bool, found: int) -> None:
    # 14 grey levels on a quiet floor: under MIN_DIFF (18), over LOW_DIFF (10)
    base = flat()
    obj = painted(base, (140, 120, 190, 170), (134, 134, 134))
    run = feed(model(low_contrast=low_contrast), lambda t: obj if t >= 5.0 else base, 20.0)
    regions = run[-1][1]
    assert len(regions) == found
    if found:
        (region,) = regions
        assert region.xyxy == pytest.approx((140, 120, 190, 170), abs=4)
        assert region.contrast == pytest.approx(14, abs=2)
        assert region.faint_share > 0.9 and region.static_since_pts == 5.0


@pytest.mark.parametrize("low_contrast, found", [(False, 0), (True, 1)])
def test_a_coloured_object_as_bright_as_its_background_is_found_by_colour(low_contrast: bool, found: int) -> None:
    # BGR (60, 120, 170) has luma 128 on a floor of 120 (8 grey levels: no grey cue at all) but
    # Cr 158 against 128: a colour change of 30 levels
    base = flat()
    obj = painted(base, (140, 120, 190, 170), (60, 120, 170))
    regions = feed(model(low_contrast=low_contrast), lambda t: obj if t >= 5.0 else base, 20.0)[-1][1]
    assert len(regions) == found
    if found:
        assert regions[0].colour_contrast > 16 and regions[0].contrast < 10


def test_a_faint_change_next_to_a_person_starts_nothing() -> None:
    # a person standing 2..30 s (boxed by the detector) with their faint reflection below their feet
    base = flat()
    person = painted(painted(base, (150, 60, 180, 150), (200, 200, 200)), (145, 152, 185, 180), (134, 134, 134))
    bg = model(low_contrast=True)
    run = feed(bg, lambda t: person if t >= 2.0 else base, 30.0,
               boxes_at=lambda t: [(150.0, 60.0, 180.0, 150.0)] if t >= 2.0 else [])
    assert all(not regions for _, regions in run)


def test_a_shadow_is_still_learnt_as_light_by_the_low_contrast_model() -> None:
    # a textured patch darkened by a quarter, its colour kept: light, not an object
    base = scene()
    shadow = base.copy()
    shadow[100:180, 100:200] = (shadow[100:180, 100:200] * 0.75).astype(np.uint8)
    bg = model(low_contrast=True)
    run = feed(bg, lambda t: shadow if t >= 5.0 else base, 20.0)
    assert all(not regions for _, regions in run)
    assert bg.relit >= 1


def test_a_tinted_object_that_keeps_the_floor_texture_is_not_taken_for_light() -> None:
    # a transparent coloured sheet over the textured floor: the grey texture correlates with the
    # floor's, the colour does not (light and shadow keep chroma, an object changes it)
    base = scene()
    sheet = base.astype(np.float32)
    sheet[100:180, 100:200] *= np.array([0.55, 0.8, 1.0], np.float32)
    tinted = np.clip(sheet, 0, 255).astype(np.uint8)
    bg = model(low_contrast=True)
    regions = feed(bg, lambda t: tinted if t >= 5.0 else base, 20.0)[-1][1]
    assert len(regions) == 1 and regions[0].colour_contrast > 8
    assert regions[0].xyxy == pytest.approx((100, 100, 200, 180), abs=6)


def test_static_evidence_needs_a_second_of_persistence() -> None:
    # at 5 fps the low-contrast model needs its pixels' evidence to build up to CONFIRM_S: the object
    # becomes static later than in the grey model (which takes one frame's verdict), at most CONFIRM_S
    # and a frame later (some pixels are absorbed by the short-term model earlier than the grey
    # model's region appears)
    from rules.background import CONFIRM_S

    base = scene()
    obj = with_box(base, (140, 120, 190, 170))
    first = {}
    for low in (False, True):
        run = feed(model(low_contrast=low), lambda t: obj if t >= 5.0 else base, 12.0, fps=5.0)
        first[low] = next(t for t, regions in run if regions)
    assert first[False] < first[True] <= first[False] + CONFIRM_S + 0.2 + 1e-6
