"""The stall rule's ``stall_model`` signal (the learned stall signal, models/stall_signal.py).

Scripted first: a fake scorer stands in for the model, so each case is exact — a region the model
calls cart, standing still, fires alone at the limit with weight 1.0 and says so in its evidence
(signal, weight, the model's score); weight 0 turns it off; a region that moves every frame never
stands; the analyzer runs the scorer every ``model_interval_s`` and holds its regions in between.

Then acceptance on real pictures (slow): the validation split of the vendor photos and the stills
of the shared street clips, each held still 40 s at 1 fps (the protocol of
tests/rules/test_stall_images.py), with the committed model and, beside it, today's rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import pytest

from camera_config.schema import Camera, NoVendingZone
from core.fakes import FakeClock, Scene
from core.fakes import ScriptedObject as Obj
from models.stall_signal import StallRegion, StallScorer
from rules.analyzer import CameraAnalyzer
from rules.stall import StallRule

ZONE = {"id": "pavement", "type": "no_vending", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
        "limit_s": 20, "linger_s": 10, "occlusion_grace_s": 8, "weights": {"stall_model": 1.0}}
CART = (300.0, 220.0, 420.0, 310.0)
VENDOR = (425.0, 200.0, 460.0, 310.0)


def run_rule(zone: dict, regions_at, objects=(), duration: float = 40.0) -> list:
    """Feed ``regions_at(pts)`` as the model's regions each frame (2 fps); the findings of the first frame
    that has any, with its pts."""
    rule = StallRule(NoVendingZone.model_validate(zone), (640, 360))
    clock = FakeClock(start=1_772_413_200.0, fps=2.0, size=(640, 360))
    scene = Scene(list(objects), size=(640, 360))
    for frame in clock.frames(duration):
        rule.model_regions = regions_at(frame.pts)
        found = rule.update(frame, [], scene.detections(frame.pts))
        if found:
            return [frame.pts, found]
    return []


def test_a_standing_cart_fires_alone_at_the_limit_with_its_score() -> None:
    pts, (finding,) = run_rule(ZONE, lambda t: [StallRegion(CART, 0.97, 6)])
    assert pts == 20.0
    assert finding.evidence.signals == {"stall_model": 1.0}
    (box,) = finding.evidence.boxes
    assert (box.label, box.score, box.xyxy) == ("stall_model", 0.97, CART)
    assert finding.place == pytest.approx((360 / 640, 310 / 360), abs=1e-3)


def test_weight_zero_turns_the_signal_off() -> None:
    assert run_rule({**ZONE, "weights": {"stall_model": 0}}, lambda t: [StallRegion(CART, 0.97, 6)]) == []


def test_half_weight_needs_a_lingering_vendor() -> None:
    zone = {**ZONE, "weights": {"stall_model": 0.5}}
    assert run_rule(zone, lambda t: [StallRegion(CART, 0.97, 6)]) == []
    pts, (finding,) = run_rule(zone, lambda t: [StallRegion(CART, 0.97, 6)], [Obj("person", VENDOR)])
    assert pts == 30.0  # the vendor counts as lingering from 10 s (linger_s), the clock runs from then
    assert finding.evidence.signals == {"lingering_person": 0.5, "stall_model": 0.5}


def test_a_region_moving_across_the_view_never_stands() -> None:
    def passing(t: float) -> list[StallRegion]:  # a cart pushed along at 40 px/s: one box size in 3 s
        x = 40.0 * t
        return [StallRegion((x, 220.0, x + 120.0, 310.0), 0.98, 6)]

    assert run_rule(ZONE, passing, duration=15.0) == []


def test_outside_the_zone_does_not_count() -> None:
    assert run_rule(ZONE, lambda t: [StallRegion((300.0, 20.0, 420.0, 120.0), 0.99, 6)]) == []


@dataclass
class CountingScorer:
    """Stands in for :class:`models.stall_signal.StallScorer`: one cart region, calls counted."""

    calls: int = 0

    def regions(self, image: np.ndarray) -> list[StallRegion]:
        self.calls += 1
        return [StallRegion(CART, 0.97, 6)]


def test_the_analyzer_runs_the_scorer_every_interval_and_holds_its_regions() -> None:
    camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "JD-0101", "analysis_fps": 2,
                                    "zones": [{**ZONE, "model_interval_s": 5}]})
    scorer = CountingScorer()
    analyzer = CameraAnalyzer(camera, static_occupancy=False, stall_scorer=cast(StallScorer, scorer))
    clock = FakeClock(start=1_772_413_200.0, fps=2.0, camera_id="cam-1", size=(640, 360))
    empty = Scene([], size=(640, 360))
    opened = []
    for frame in clock.frames(30):
        for event in analyzer.process(frame, empty.detections(frame.pts)):
            opened.append((event.event, event.stream_pts, dict(event.evidence.signals)))
    assert scorer.calls == 7  # at 0, 5, 10, ..., 30 s of the 61 frames
    assert opened == [("opened", 20.0, {"stall_model": 1.0})]


def test_no_scorer_no_signal() -> None:
    camera = Camera.model_validate({"id": "cam-1", "url": "clip.mp4", "grid_cell": "JD-0101", "analysis_fps": 2,
                                    "zones": [ZONE]})
    analyzer = CameraAnalyzer(camera, static_occupancy=False, stall_scorer=None)
    clock = FakeClock(start=1_772_413_200.0, fps=2.0, camera_id="cam-1", size=(640, 360))
    empty = Scene([], size=(640, 360))
    assert not [e for f in clock.frames(30) for e in analyzer.process(f, empty.detections(f.pts))]


@pytest.mark.slow
def test_stall_rule_with_the_model_on_validation_photos_and_street_stills(asset_path) -> None:
    from core.assets import AssetCache
    from models.stall_train import SPLIT_DIR, read_split
    from patrol.commands.train import measure

    _train, val = read_split(SPLIT_DIR)
    figures = measure(StallScorer(), asset_path("vendor_carts"), val, AssetCache())
    print(f"\nstall rule on {figures.val_photos} validation vendor photos: today {figures.val_rate_today:.3f}, "
          f"with stall_model {figures.val_rate_model:.3f} (floor 0.85); on {figures.street_frames} street stills: "
          f"today {figures.street_rate_today:.3f}, with stall_model {figures.street_rate_model:.3f} (ceiling 0.05); "
          f"stall_model box on the cart in {figures.model_on_cart_val}; scorer {figures.scorer_ms_median} ms, "
          f"detector {figures.detector_ms_median} ms per still")
    for line in figures.street_fired:
        print("  fired on", line)
    assert figures.val_photos == 50 and figures.street_frames >= 60
    assert figures.val_rate_model >= 0.85
    assert figures.street_rate_model <= 0.05


def test_patrol_runs_factory_gives_the_scorer_only_where_a_zone_weighs_it() -> None:
    from camera_config.schema import SiteConfig
    from models.stall_signal import shared_scorer
    from rules.analyzer import camera_analyzer

    def site(zones: list[dict]) -> SiteConfig:
        return SiteConfig.model_validate({"site": {"name": "t", "timezone": "UTC"}, "cameras": [
            {"id": "cam-1", "url": "clip.mp4", "grid_cell": "JD-0101", "analysis_fps": 1, "zones": zones}]})

    default_weights = {k: v for k, v in ZONE.items() if k != "weights"}  # the signal is opt-in
    parking = {"id": "kerb", "type": "no_parking", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
    for zones, expected in (([ZONE], shared_scorer()), ([parking], None),
                            ([{**ZONE, "weights": {"stall_model": 0}}], None), ([default_weights], None)):
        cfg = site(zones)
        assert camera_analyzer(cfg.cameras[0], cfg).stall_scorer is expected
