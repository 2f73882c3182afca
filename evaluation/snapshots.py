"""Snapshot crops of an evaluation's false positives and misses, for ``report.md``.

Each false positive gets the analysed frame at its opening, cropped around its evidence box (else
around its place); each miss gets the frame when the labelled problem was due (the middle of the
label's start window, or its start when the window is open-ended), cropped around the label's
``where`` box (else its zone). The box is drawn on the crop; the crop keeps a margin of context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from evaluation.labels import ClipLabels, Expected
from evaluation.matching import ClipResult, FalsePositive
from evaluation.replay import sample_frames

NormBox = tuple[float, float, float, float]

CONTEXT = 0.6
"""Margin around the box, as a share of its size on each side (a car's box shows the lane around it)."""
MIN_CROP_PX = 96
"""Smallest crop side: a distant car's box is 20-40 px on the shared 352-640 px clips."""
PLACE_HALF = 0.05
"""Half-size of the box drawn around a place with no evidence box (the lifecycle's place radius)."""
FP_BGR = (0, 0, 255)
FN_BGR = (0, 200, 255)


@dataclass(frozen=True)
class Shot:
    """One false positive or miss to picture: when, where (normalised box) and the file name."""

    kind: str  # "FP" or "FN"
    index: int
    at_s: float
    box: NormBox | None
    file: str


def _fp_box(fp: FalsePositive) -> NormBox | None:
    inc = fp.incident
    if inc.box is not None:
        return inc.box
    if inc.place is not None:
        x, y = inc.place
        return (x - PLACE_HALF, y - 2 * PLACE_HALF, x + PLACE_HALF, y)
    return None


def _fn_time(label: Expected) -> float:
    lo, hi = label.start.lo, label.start.hi
    return lo if hi is None else (lo + hi) / 2


def _fn_box(label: Expected, labels: ClipLabels) -> NormBox | None:
    if label.where is not None and label.where.units == "norm":
        return label.where.box
    zone = next((z for z in labels.camera.zones if z.id == label.zone), None)
    if zone is None:
        return None
    xs, ys = [p[0] for p in zone.polygon], [p[1] for p in zone.polygon]
    return (min(xs), min(ys), max(xs), max(ys))


def shots_of(result: ClipResult, labels: ClipLabels) -> list[Shot]:
    stem = result.clip
    out = [Shot("FP", i + 1, fp.incident.opened, _fp_box(fp), f"{stem}-fp{i + 1}.png")
           for i, fp in enumerate(result.false_positives)]
    out += [Shot("FN", i + 1, _fn_time(m), _fn_box(m, labels), f"{stem}-fn{i + 1}.png")
            for i, m in enumerate(result.missed)]
    return out


def crop(image: npt.NDArray[np.uint8], box: NormBox | None, colour: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    """The part of ``image`` around ``box`` (normalised) with the box drawn; the whole frame without a box."""
    h, w = image.shape[:2]
    img = image.copy()
    if box is None:
        return img
    x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    cv2.rectangle(img, (round(x1), round(y1)), (round(x2), round(y2)), colour, 2)
    half_w = max((x2 - x1) * (0.5 + CONTEXT), MIN_CROP_PX / 2)
    half_h = max((y2 - y1) * (0.5 + CONTEXT), MIN_CROP_PX / 2)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = max(round(cx - half_w), 0), max(round(cy - half_h), 0)
    right, bottom = min(round(cx + half_w), w), min(round(cy + half_h), h)
    return img[top:bottom, left:right]


def write_snapshots(labels: Sequence[ClipLabels], results: Sequence[ClipResult], folder: Path) -> dict[str, list[Shot]]:
    """Write a crop for every false positive and miss; ``{clip name: shots}`` (files under ``folder``).

    Each clip with something to show is decoded once, at its camera's analysis rate (the frames the
    replay analysed); a shot takes the analysed frame nearest its time.
    """
    by_name = {lab.name: lab for lab in labels}
    out: dict[str, list[Shot]] = {}
    for result in results:
        lab = by_name.get(result.clip)
        if lab is None:
            continue
        shots = shots_of(result, lab)
        if not shots:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        best: dict[int, tuple[float, npt.NDArray[np.uint8]]] = {}
        for frame in sample_frames(lab.clip, lab.camera.id, lab.camera.analysis_fps, lab.wall_start):
            for i, shot in enumerate(shots):
                gap = abs(frame.pts - shot.at_s)
                if i not in best or gap < best[i][0]:
                    best[i] = (gap, frame.image)
        for i, shot in enumerate(shots):
            if i in best:
                colour = FP_BGR if shot.kind == "FP" else FN_BGR
                cv2.imwrite(str(folder / shot.file), crop(best[i][1], shot.box, colour))
        out[result.clip] = [s for i, s in enumerate(shots) if i in best]
    return out
