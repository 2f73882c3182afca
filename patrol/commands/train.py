"""``patrol train stall``: train the learned stall signal, measure the stall rule with and without it.

One command reproduces the committed model: it fits the cell classifier (:mod:`models.stall_train`)
on the training split of the shared vendor photos, writes ``models/stall_thela_lr.onnx``, its
sha256, size and threshold into ``models/registry.yaml`` (section ``signals``), then measures the
stall rule on the validation photos and on still frames of the shared street clips, each held still
as a 40 s clip (:func:`fires_on_still`, the settings of ``tests/rules/test_stall_images.py``), with
today's rule (no model) beside, and writes the model card ``models/stall_thela_lr.md``.

``--smoke`` (CI) trains on a few photos into ``--out`` (a temporary folder by default) and leaves
the committed model and registry alone. Needs the ``train`` extra (scikit-learn, skl2onnx).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from camera_config.schema import Camera
from core.assets import AssetCache, get_asset
from core.events import Evidence
from core.types import Detections, Frame
from models.registry import REGISTRY_YAML
from models.stall_signal import MODELS_DIR, SIGNAL_NAME, StallScorer, load_signal_spec, sha256_of
from models.stall_train import (
    SPLIT_DIR,
    Photo,
    TrainResult,
    TrainSettings,
    check_loadable,
    read_photos,
    read_split,
    spec_for,
    train,
)
from rules.analyzer import CameraAnalyzer, sample

DETECTOR = "yolox_nano_416"
DETECTOR_SCORE = 0.3  # the detector's floor in tests/rules/test_stall_images.py
# the still-picture protocol of tests/rules/test_stall_images.py: a no_vending zone over the lower
# 60 % of the view, limit 20 s, linger 10 s, 1 analysed frame a second for 40 s; the learned signal is
# opt-in (weight 0 by default), so the zone weighs it as a site that turns it on would
STILL_ZONE: dict[str, Any] = {"id": "ground", "type": "no_vending", "limit_s": 20, "linger_s": 10,
                              "weights": {"stall_model": 1.0},
                              "polygon": [[0, 0.4], [1, 0.4], [1, 1], [0, 1]]}
STILL_SECONDS = 40
# the street clips and rates of tests/rules/test_stall_images.py (61 frames); none is in training
STREET_CLIPS: tuple[tuple[str, float], ...] = (
    ("vehicle_counting_input_video", 0.25), ("car_detection", 0.34), ("pedestrian_survaillance", 1.0),
    ("evadb_traffic_10fps", 1.0), ("bgslibrary_video", 0.34), ("bgslibrary_video02", 0.34),
    ("bgslibrary_video03", 0.34))


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train the project's own models (needs the train extra)")
    tsub = p.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    q = tsub.add_parser("stall", help="the learned stall signal: train, register, measure, write its card")
    q.add_argument("--smoke", action="store_true",
                   help="a short training on a few photos into --out; the committed model is left alone")
    q.add_argument("--out", type=Path, default=None,
                   help="folder for the model and card (default: models/, or a temporary folder with --smoke)")
    q.add_argument("--skip-measure", action="store_true", help="train and write only; no rule figures")
    q.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    q.add_argument("--compare", type=Path, default=None,
                   help="an earlier run's --json: the card then says how far this run's figures are from it")
    q.set_defaults(func=train_stall)


def still_camera() -> Camera:
    return Camera.model_validate({"id": "still", "url": "still.mp4", "grid_cell": "JD-0101", "analysis_fps": 1,
                                  "detector": {"model": DETECTOR}, "zones": [STILL_ZONE]})


def fires_on_still(image: npt.NDArray[np.uint8], detections: Detections,
                   scorer: StallScorer | None) -> Evidence | None:
    """Hold ``image`` still for 40 s at 1 fps; the evidence of the first opened stall, or None."""
    analyzer = CameraAnalyzer(still_camera(), static_occupancy=False, stall_scorer=scorer)
    for i in range(STILL_SECONDS + 1):
        for event in analyzer.process(Frame("still", float(i), 1_767_574_800.0 + i, image), detections):
            if event.type == "street_stall" and event.event == "opened":
                return event.evidence
    return None


def street_stills(cache: AssetCache, clips: Sequence[tuple[str, float]] = STREET_CLIPS) -> Iterator[
        tuple[str, npt.NDArray[np.uint8]]]:
    """Still frames of the street clips, decoded and sampled as the stall-images test does."""
    from patrol.commands.replay import clip_frames

    cam = still_camera()
    for name, fps in clips:
        for frame in sample(clip_frames(cache.fetch(get_asset(name)), cam, fps, 0.0), fps):
            yield f"{name}@{frame.pts:.1f}s", frame.image


@dataclass
class RuleFigures:
    val_photos: int
    val_rate_today: float
    val_rate_model: float
    street_frames: int
    street_rate_today: float
    street_rate_model: float
    model_alone_val: int
    """Validation photos on which the stall_model signal was the only object evidence that fired."""
    model_on_cart_val: int
    """Validation photos fired with the model whose stall_model evidence box overlaps a thela box."""
    scorer_ms_median: float
    detector_ms_median: float
    street_fired: list[str]


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def on_cart(evidence: Evidence, photo: Photo) -> bool:
    return any(_overlaps(box.xyxy, cart) for box in evidence.boxes if box.label == "stall_model"
               for cart in photo.thela)


def measure(scorer: StallScorer, folder: Path, val_names: Sequence[str], cache: AssetCache) -> RuleFigures:
    """The stall rule with and without the model on the validation photos and the street stills."""
    from models.factory import load_detector

    detector = load_detector(DETECTOR, score_threshold=DETECTOR_SCORE)
    today = model = alone = placed = 0
    scorer_ms: list[float] = []
    detector_ms: list[float] = []

    def both(image: npt.NDArray[np.uint8]) -> tuple[Evidence | None, Evidence | None]:
        t0 = time.perf_counter()
        dets = detector.detect([image])[0]
        t1 = time.perf_counter()
        scorer.regions(image)
        t2 = time.perf_counter()
        detector_ms.append((t1 - t0) * 1000)
        scorer_ms.append((t2 - t1) * 1000)
        return fires_on_still(image, dets, None), fires_on_still(image, dets, scorer)

    for photo in read_photos(folder, val_names):
        image = cv2.imread(str(photo.path))
        assert image is not None, photo.path  # read_photos has read it
        plain, learned = both(np.asarray(image, np.uint8))
        today += plain is not None
        model += learned is not None
        if learned is not None:
            alone += set(learned.signals) <= {"stall_model", "lingering_person"}
            placed += on_cart(learned, photo)
    street = street_today = street_model = 0
    fired = []
    for where, image in street_stills(cache):
        street += 1
        plain, learned = both(image)
        street_today += plain is not None
        street_model += learned is not None
        if learned is not None:
            fired.append(f"{where} {dict(learned.signals)}")
    n = max(len(val_names), 1)
    return RuleFigures(val_photos=len(val_names), val_rate_today=round(today / n, 3),
                       val_rate_model=round(model / n, 3), street_frames=street,
                       street_rate_today=round(street_today / max(street, 1), 3),
                       street_rate_model=round(street_model / max(street, 1), 3), model_alone_val=alone,
                       model_on_cart_val=placed,
                       scorer_ms_median=round(statistics.median(scorer_ms), 1),
                       detector_ms_median=round(statistics.median(detector_ms), 1), street_fired=fired)


def write_registry_entry(sha256: str, size: int, threshold: float, path: Path = REGISTRY_YAML) -> None:
    """Rewrite the sha256, size and threshold lines of ``signals.stall_thela_lr`` in place (comments stay)."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n  {SIGNAL_NAME}:\n")
    head, block = text[:start], text[start:]
    block = re.sub(r"(\n    sha256: )\S+", rf"\g<1>{sha256}", block, count=1)
    block = re.sub(r"(\n    size: )\S+", rf"\g<1>{size}", block, count=1)
    block = re.sub(r"(\n    threshold: )\S+", rf"\g<1>{threshold}", block, count=1)
    path.write_text(head + block, encoding="utf-8")


def comparison(previous: dict[str, Any], sha256: str, figures: RuleFigures | None) -> list[str]:
    """Card lines: this run against an earlier run's JSON (``--compare``)."""
    lines = ["## Repeatability",
             f"Against an earlier run ({previous.get('cache', '?')} cache): model bytes "
             + ("identical" if previous.get("sha256") == sha256 else f"differ (earlier {previous.get('sha256')})")
             + "."]
    rule = previous.get("rule")
    if figures is not None and isinstance(rule, dict):
        for key in ("val_rate_model", "street_rate_model"):
            diff = 100 * abs(getattr(figures, key) - float(rule[key]))
            lines.append(f"- {key}: {getattr(figures, key):.3f} now, {float(rule[key]):.3f} then "
                         f"({diff:.1f} points apart)")
    return [*lines, ""]


def card_text(result: TrainResult, sha256: str, size: int, threshold: float, figures: RuleFigures | None,
              train_names: Sequence[str], val_names: Sequence[str], total_s: float,
              compared: Sequence[str] = ()) -> str:
    s = result.settings
    lines = [
        f"# Model card: {SIGNAL_NAME} (learned stall signal)",
        "",
        "Written by `patrol train stall` (patrol/commands/train.py); do not edit by hand.",
        "",
        "## What it is",
        f"A logistic regression (scikit-learn, standardised inputs, `class_weight=balanced`, C={s.C}) over the",
        f"stride-16 cells of `{s.features_model}`'s feature pyramid: per cell the 128 channels of",
        f"`{s.feature_tensors[0]}` and the 256 of `{s.feature_tensors[1]}` (the stride-32 cell above it).",
        f"A cell at or over probability {threshold} is cart; connected cells are one region, its score the best",
        "cell's probability. Exported with skl2onnx, run with ONNX Runtime only (models/stall_signal.py).",
        f"File `models/{SIGNAL_NAME}.onnx`, {size} bytes, sha256 `{sha256}`.",
        "",
        "## Data and split",
        "- Positives: cells whose centre lies in a `thela` box (YOLO class 1) of asset `vendor_carts`, the box",
        f"  shrunk by {s.shrink:.0%} on each side; cells in the box but outside the shrunk one are left out.",
        f"- Split: `labels/stall_split/train.txt` ({len(train_names)} photos), `val.txt` ({len(val_names)});",
        "  fixed once with numpy default_rng(13). Validation photos are never seen in training.",
        "- Negatives: every other cell of the training photos (road, cars, people, rickshaws, barricades) and",
        "  every cell of still frames of " + ", ".join(f"`{n}` every {e:g} s" for n, e in s.negative_clips) + ".",
        "  The street clips the rule is measured on below are not among them.",
        f"- Used in this run: {result.train_photos} training photos, {result.negative_frames} negative frames, "
        f"{result.cells} cells ({result.positive_cells} cart).",
        "",
        "## Threshold",
        f"Chosen on training data only, out of fold ({s.folds} folds grouped by photo and clip): the highest",
        f"threshold at which at least {s.target_recall:.0%} of training photos have a cart cell over it.",
        f"Out of fold at {threshold}: {result.oof_photo_recall:.3f} of training photos have a cart cell over it;",
        f"{result.oof_negative_rate:.3f} of the negative frames (each clip held out) have a cell over it, and",
        f"{result.oof_far_rate:.3f} of the training photos have one far from every cart (outside each box grown",
        "by half): the model answers 'a vending street scene' as much as 'this is the cart', so the evidence",
        "box may sit beside the cart (see the place figure below).",
        "",
    ]
    if figures is not None:
        f = figures
        lines += [
            "## Figures (the stall rule, each picture held still 40 s at 1 fps)",
            "Zone over the lower 60 % of the view, limit 20 s, linger 10 s, detector "
            f"`{DETECTOR}` at score >= {DETECTOR_SCORE}, background model off (settings of "
            "tests/rules/test_stall_images.py); `stall_model` weight 1.0 (the default).",
            "",
            "| pictures | today's rule | with `stall_model` |",
            "|---|---:|---:|",
            f"| {f.val_photos} validation vendor photos | {f.val_rate_today:.3f} | {f.val_rate_model:.3f} |",
            f"| {f.street_frames} street-clip stills | {f.street_rate_today:.3f} | {f.street_rate_model:.3f} |",
            "",
            f"On {f.model_alone_val} validation photos the model was the only object evidence that fired; on",
            f"{f.model_on_cart_val} of the {round(f.val_rate_model * f.val_photos)} fired with the model, its "
            "`stall_model` evidence box overlaps a labelled cart (the place is the cart's).",
            "Street stills it fired on: " + ("; ".join(f.street_fired) if f.street_fired else "none") + ".",
            "",
            "## Cost",
            f"One scorer pass (truncated YOLOX-Nano + classifier) {f.scorer_ms_median} ms median per still, "
            f"the full detector {f.detector_ms_median} ms, on this machine (2 shared CPU cores, 1 ORT thread).",
            "The analyzer runs it every `model_interval_s` (10 s by default) per camera and holds its regions in",
            f"between, not on every analysed frame: at 0.5 analysed fps that is one pass in 5 frames, about "
            f"{f.scorer_ms_median / 5:.0f} ms per analysed frame on average.",
            "",
        ]
    lines += [
        *compared,
        "## Training time",
        f"{total_s:.0f} s for the whole command (training and the figures above) on this machine (2 shared CPU "
        f"cores, other work running); of it features "
        f"{result.seconds['features']} s, out-of-fold threshold {result.seconds['threshold_cv']} s, final fit and "
        f"export {result.seconds['fit_export']} s.",
        "",
        "## Limits",
        "- The photos are street-level (many map-service captures), not elevated CCTV; carts seen from a",
        "  pole camera are smaller and seen from above. Recall on real CCTV stalls is unmeasured.",
        "- Training is deterministic (same data and settings give the same bytes).",
        "",
    ]
    return "\n".join(lines)


def train_stall(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    cache = AssetCache()
    folder = cache.fetch(get_asset("vendor_carts"))
    settings = TrainSettings(max_train_photos=12, folds=2) if args.smoke else TrainSettings()
    out: Path = args.out or (Path(tempfile.mkdtemp(prefix="stall-smoke-")) if args.smoke else MODELS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    result = train(folder, cache, settings)
    model_path = out / f"{SIGNAL_NAME}.onnx"
    model_path.write_bytes(result.model_bytes)
    check_loadable(model_path)
    sha, size = sha256_of(model_path), model_path.stat().st_size
    spec = spec_for(result, SIGNAL_NAME, model_path.name, sha, size, f"{SIGNAL_NAME}.md")
    committed = out.resolve() == MODELS_DIR.resolve()
    if committed:
        write_registry_entry(sha, size, spec.threshold)
        spec = load_signal_spec()
    train_names, val_names = read_split(SPLIT_DIR)
    figures = None
    if not args.skip_measure:
        scorer = StallScorer(spec, cache, classifier_path=None if committed else model_path)
        figures = measure(scorer, folder, val_names[:6] if args.smoke else val_names, cache)
    total = time.perf_counter() - t0
    compared = comparison(json.loads(args.compare.read_text(encoding="utf-8")), sha, figures) if args.compare else []
    card = card_text(result, sha, size, spec.threshold, figures, train_names, val_names, total, compared)
    (out / f"{SIGNAL_NAME}.md").write_text(card, encoding="utf-8")
    summary = {"model": str(model_path), "sha256": sha, "size": size, "threshold": spec.threshold,
               "oof_photo_recall": result.oof_photo_recall, "oof_negative_rate": result.oof_negative_rate,
               "oof_far_rate": result.oof_far_rate,
               "seconds": round(total, 1), "cache": str(cache.cache_dir),
               **({"rule": asdict(figures)} if figures else {})}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "rule"}))
    if figures is not None:
        print(f"stall rule on {figures.val_photos} validation photos: today {figures.val_rate_today:.3f}, "
              f"with stall_model {figures.val_rate_model:.3f}; on {figures.street_frames} street stills: today "
              f"{figures.street_rate_today:.3f}, with stall_model {figures.street_rate_model:.3f}; scorer "
              f"{figures.scorer_ms_median} ms/frame")
    return 0
