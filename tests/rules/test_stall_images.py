"""Street-stall detection rates on real pictures, each held still as a short clip.

Positives: the vendor-cart photos (asset ``vendor_carts``: 151 street photos with pushcarts; every
second one is used to keep the test short). Negatives: frames of the shared traffic and pedestrian
clips (a frame every few seconds), held still the same way. Each picture is detected once (the
picture does not change, so neither do its detections) and fed to a fresh analyzer at 1 fps for
40 s with a no_vending zone over the ground (the lower 60 % of the view), limit 20 s, linger 10 s.
The background model is off: a picture held still has no new static object in it.

Why positives should fire: carts come out of a COCO detector as truck / motorcycle / bicycle (weak
stall evidence, 0.5) or with an umbrella, table or chair (1.0), and the vendor standing by the
cart lingers (0.5). Why street frames should not: their people stand near no stall object and
parked cars are not stall evidence; a parked truck or motorcycle alone is only 0.5.

The rates are printed and compared with the committed thresholds in ``stall_rates.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from camera_config.schema import Camera
from core.types import Detections, Frame
from patrol.commands.replay import clip_frames
from rules.analyzer import CameraAnalyzer, sample

pytestmark = pytest.mark.slow

RATES = json.loads((Path(__file__).parent / "stall_rates.json").read_text())
STREET_CLIPS = [("vehicle_counting_input_video", 0.25), ("car_detection", 0.34), ("pedestrian_survaillance", 1.0),
                ("evadb_traffic_10fps", 1.0), ("bgslibrary_video", 0.34), ("bgslibrary_video02", 0.34),
                ("bgslibrary_video03", 0.34)]


def camera() -> Camera:
    return Camera.model_validate({"id": "still", "url": "still.mp4", "grid_cell": "JD-0101", "analysis_fps": 1,
                                  "detector": {"model": RATES["model"]}, "zones": [RATES["zone"]]})


def fires(image, detections: Detections) -> dict[str, float] | None:
    """Hold ``image`` still for 40 s at 1 fps; the signals of the first opened stall, or None."""
    analyzer = CameraAnalyzer(camera(), static_occupancy=False)
    for i in range(41):
        for event in analyzer.process(Frame("still", float(i), 1_767_574_800.0 + i, image), detections):
            assert event.type == "street_stall" and event.event == "opened"
            assert (event.stream_pts or 0) >= 20.0  # never before the limit
            return dict(event.evidence.signals)
    return None


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    from models.factory import load_detector

    return load_detector(RATES["model"], score_threshold=0.3)


def test_stall_rule_fires_on_vendor_carts_and_seldom_on_streets(asset_path, detector) -> None:
    folder = asset_path("vendor_carts")
    pictures = sorted((folder / "images" / "train").glob("*.jpg"))[::2]
    assert len(pictures) >= 70
    vendor_hits = 0
    for path in pictures:
        image = cv2.imread(str(path))
        assert image is not None, path
        if fires(image, detector.detect([image])[0]) is not None:
            vendor_hits += 1

    street, street_hits, fired = 0, 0, []
    for name, fps in STREET_CLIPS:
        cam = camera()
        for frame in sample(clip_frames(asset_path(name), cam, fps, 0.0), fps):
            street += 1
            signals = fires(frame.image, detector.detect([frame.image])[0])
            if signals is not None:
                street_hits += 1
                fired.append(f"{name}@{frame.pts:.1f}s {signals}")

    vendor_rate, street_rate = vendor_hits / len(pictures), street_hits / street
    print(f"\nstall rule: vendor carts {vendor_hits}/{len(pictures)} = {vendor_rate:.3f} "
          f"(threshold >= {RATES['vendor_min_rate']}); street frames {street_hits}/{street} = {street_rate:.3f} "
          f"(threshold <= {RATES['street_max_rate']})")
    for line in fired:
        print("  fired on", line)
    assert vendor_rate >= RATES["vendor_min_rate"]
    assert street_rate <= RATES["street_max_rate"]
