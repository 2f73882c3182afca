"""Dual background model: new static objects as "foreground to the long-term model, background
to the short-term model", in the spirit of Porikli, Ivanov and Haga 2008, *Robust abandoned
object detection using dual foregrounds*.

Two running-average backgrounds of a downscaled grey image are kept, each with a time constant
in SECONDS: the per-update learning rate is ``1 - exp(-dt / tau)`` with ``dt`` taken from frame
timestamps, so 1 fps, 5 fps and dropped frames all age the models alike. An object that arrives
and stays differs from the long-term model at once and is absorbed by the short-term model after
about ``short_term_s``; from then on its pixels are *static foreground*. A connected patch of
static foreground larger than ``min_area`` is a :class:`StaticRegion`, dated by when its pixels
began to differ from the long-term model (``static_since_pts``: the object's arrival, not the
confirmation) and carrying how long they have differed so while clear of every ignore box
(``seen_s``: the evidence a rule's time limit should be measured against — Porikli's evidence
accumulator, in seconds).

Foreground is judged per pixel against that pixel's own measured noise (:meth:`threshold_map`),
so a faint object on a quiet floor is found while swaying foliage keeps a high threshold. The
long-term model starts as a running mean of the frames so far (:meth:`_long_tau`), so the first
frame's passing light is not kept for minutes. Pieces of one object (close for their size,
appearing together) are one region. :meth:`still_there` tells a rule whether a reported object's
place is still not background (hidden by people or a train) or back to background (taken away).

What it does not report, and how:

* **tracked people and vehicles** — pixels under ``ignore_boxes`` (grown by a margin) are never
  reported, never learnt into the long-term model, and their ``seen_s`` does not grow, so a person
  walking, standing or sitting is not absorbed as background, leaves no ghost when they go, and a
  person the detector misses for a frame or two is not an object that has been there for minutes;
* **global illumination** (clouds, dusk, auto-exposure): each frame is divided by a robust global
  gain, the median of frame / background over the pixels not under an ignore box; a change that
  still makes more than ``global_change_frac`` of the frame foreground at once (camera moved,
  scene changed) re-adapts both models to the new picture instead of reporting;
* **local light** (part of the frame lit, a shadow): a region that shows the long-term model's
  own texture, only brighter or darker (normalised cross-correlation >= ``lighting_ncc``), is
  learnt as background. On a textureless surface light cannot be told from a flat object;
* **camera shake**: the global translation to the long-term model is estimated by phase
  correlation (at half resolution) and undone (1 to ``max_shift_px`` working pixels), and
  foreground is measured against the 3x3 min/max of the background, so sub-pixel sway along
  edges is not foreground either;
* **ghosts** (something in the first frame, e.g. a parked car, that leaves): a region whose
  outline is a contour in the long-term model but not in the frame, or that stands out from its
  surroundings in the model but not in the frame, is learnt as background (:meth:`_is_ghost`);
* **specks**: morphological opening and ``min_area`` (fraction of the frame).

The long-term model learns only pixels that look like background (selective update), so a
static object stays reported while it stays — until ``max_static_s``, after which it is learnt
as background.

One model per camera can serve several rules: a second ``update`` with the same ``pts`` returns
the regions computed by the first call (whatever its ``ignore_boxes``).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float] | Sequence[float]
GreyImage = npt.NDArray[np.float32]
BoolMask = npt.NDArray[np.bool_]

MERGE_GAP = 0.015
"""Static pieces closer than this fraction of the working width are one object, whatever their size."""
FRAGMENT_REACH = 0.5
"""Pieces closer than this times the smaller one's size (larger side of its box) are one object:
the pasted branch on the kerb clip broke into pieces 4-12 working px apart, each 20-30 px across."""
NOISE_K = 4.0
"""Foreground is a difference over this many times the pixel's mean absolute noise (about 3.2
standard deviations for Gaussian noise: a quiet pixel flips by chance about once in 700 frames)."""
MIN_DIFF = 18.0
"""The lowest threshold any pixel gets (grey levels, working image). Measured 2026-12-02 on the real
clips at 2 fps: at 15-16 a man's reflection in the polished AVSS platform floor, standing still for
40 s, became a static object and the wheeled-away suitcase's incident closed late; at 17 that
close still came 2.6 s late; at 18 the platform gives exactly the suitcase. At 18 the ABODA
backpack with its contrast cut to a mean 22.7 grey levels still fires (the fixed threshold of 30
lost it at 29); at 20.1 it does not."""
WARMUP_FLOOR = 3.0
"""While the long-term model is younger than ``long_term_s`` its time constant is its age, but
never under this many short-term constants: a running mean of the first frames, steady enough
that an object arriving in the first seconds still stands out (see :meth:`DualBackground._long_tau`)."""
SHIFT_GAIN = 0.9
"""A measured camera shift is undone only if it brings the frame at least this much closer to the
long-term model (median absolute difference): a large new object biases phase correlation by
about a pixel, and undoing a shake that did not happen, learnt into the model frame after frame,
made it drift (a 100x100 px box on a still synthetic street crept 2 px a second)."""
GHOST_RING_FG = 0.5
"""A region whose surrounding ring is more than this share foreground to the long-term model is a
piece of a larger new object (the flat inside of a box that became static before its textured
edge), never a ghost: a departed object's place is surrounded by background."""
TOGETHER_S = 10.0
"""Pieces whose onsets (mean) lie further apart than this are different objects, and healing a
ghost or a light change spares pixels whose onset is this far from the region's: on the AVSS
platform a departing train's region (onset ~95 s) touched the suitcase (onset ~45 s); healed as
one, it wiped the suitcase into the background. Ten seconds is two short-term time constants:
pieces of one object set down show up within one."""
_EPS = 1.0  # added to grey levels before taking ratios, so black pixels do not explode the gain


@dataclass(frozen=True, slots=True)
class StaticRegion:
    """A new object that has stood still: a connected patch of static foreground.

    ``xyxy`` is in pixel coordinates of the image given to :meth:`DualBackground.update`;
    ``mask`` is the region's own pixels inside that box (shape ``(y2 - y1, x2 - x1)``, with the
    box rounded outward to whole pixels); ``area_frac`` is its pixel area over the frame area.
    ``static_since_pts`` is when its pixels began to differ from the long-term model (median):
    when the object arrived. ``seen_s`` is how long (median, seconds) its pixels have differed so
    while NOT under an ignore box: time the object was actually seen there, not a person hiding
    it or a person the detector missed for a moment.
    """

    xyxy: tuple[float, float, float, float]
    area_frac: float
    static_since_pts: float
    seen_s: float
    mask: BoolMask | None = None
    contrast: float = 0.0
    """Mean absolute grey difference (0..255, after gain normalisation) of its pixels from the
    long-term background: how much the object stands out."""

    @property
    def ground_point(self) -> tuple[float, float]:
        """Bottom centre of the box: where the object stands."""
        x1, _, x2, y2 = self.xyxy
        return ((x1 + x2) / 2, y2)


def _gradient(image: GreyImage) -> GreyImage:
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    out: GreyImage = np.asarray(cv2.magnitude(gx, gy), dtype=np.float32)
    return out


def _group_nearby(stats: npt.NDArray[np.int32], onsets: npt.NDArray[np.float64], gap: int) -> list[list[int]]:
    """Indices of components (rows of ``stats``: x, y, w, h, area; ``onsets``: each one's mean
    onset pts) that are one object the threshold broke into pieces: their boxes lie within
    ``gap`` pixels, or within ``FRAGMENT_REACH`` x the smaller piece's size, of each other, and
    they began to differ from the background within ``TOGETHER_S`` of each other (pieces of one
    object appear together; a bag set down by a train that came a minute earlier is not part of it)."""
    x1 = stats[:, 0].astype(np.float64)
    y1 = stats[:, 1].astype(np.float64)
    x2 = x1 + stats[:, 2]
    y2 = y1 + stats[:, 3]
    size = np.maximum(stats[:, 2], stats[:, 3]).astype(np.float64)
    reach = np.maximum(gap, FRAGMENT_REACH * np.minimum(size[:, None], size[None, :]))
    dx = np.maximum(0.0, np.maximum(x1[:, None], x1[None, :]) - np.minimum(x2[:, None], x2[None, :]))
    dy = np.maximum(0.0, np.maximum(y1[:, None], y1[None, :]) - np.minimum(y2[:, None], y2[None, :]))
    together = np.abs(onsets[:, None] - onsets[None, :]) <= TOGETHER_S
    together |= ~np.isfinite(onsets[:, None]) | ~np.isfinite(onsets[None, :])
    touch = (dx <= reach) & (dy <= reach) & together
    parent = list(range(len(stats)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(touch, 1)), strict=True):
        parent[root(int(i))] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(stats)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def learning_rate(dt: float, tau: float) -> float:
    """Running-average weight of a new sample ``dt`` seconds after the last, time constant ``tau``."""
    if dt <= 0:
        return 0.0
    return 1.0 - math.exp(-dt / tau)


_last_prepared = threading.local()


def _prepared(image: npt.NDArray[np.uint8], work_size: tuple[int, int]) -> GreyImage:
    """Grey, resized and blurred ``image``; the last result (per thread) is reused while the same
    array is asked for at the same size, so a camera's background models convert a frame once.
    Weakly referenced: a new picture that happens to reuse a freed array's address is not mistaken
    for the old one. The result must not be modified in place."""
    memo = getattr(_last_prepared, "value", None)
    if memo is not None and memo[0]() is image and memo[1] == work_size:
        cached: GreyImage = memo[2]
        return cached
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if (grey.shape[1], grey.shape[0]) != work_size:
        grey = np.asarray(cv2.resize(grey, work_size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    out: GreyImage = np.asarray(cv2.GaussianBlur(grey.astype(np.float32), (5, 5), 0), dtype=np.float32)
    out.flags.writeable = False  # shared: a model that changed it in place would corrupt the others
    try:
        _last_prepared.value = (weakref.ref(image), work_size, out)
    except TypeError:  # an array view type that takes no weak reference: no sharing, still correct
        _last_prepared.value = None
    return out


class DualBackground:
    """Long- and short-term backgrounds; ``update`` returns the static regions of this frame.

    Args:
        long_term_s: time constant (s) of the long-term model for background pixels.
        short_term_s: time constant (s) of the short-term model; an object is "static" after
            roughly this long. Must be shorter than ``long_term_s``.
        diff_threshold: grey-level difference (0..255, after gain normalisation) that counts
            as foreground at a pixel not yet measured quiet; each pixel's own threshold is
            ``NOISE_K`` x its measured noise, between ``MIN_DIFF`` and this (:meth:`threshold_map`).
        min_area: least area of a reported region, as a fraction of the frame.
        work_width: images are downscaled to this width (never upscaled) before modelling.
        max_static_s: seconds after which a static object is learnt into the long-term model.
        global_change_frac: a frame with more than this fraction of foreground pixels is a
            global change (lights, camera moved): both models re-adapt, nothing is reported.
        max_shift_px: largest camera shake (working pixels) that is compensated; a larger
            measured shift is ignored (treated as noise or left to the global-change test).
        ignore_margin: ignore boxes grow by this fraction of their size on each side.
        ghost_edge_ratio: a region whose outline is this much less edgy in the frame than in the
            long-term model is a ghost (see :meth:`_is_ghost`) and is learnt, not reported.
        lighting_ncc: a region this correlated with the long-term model's texture is a local
            light change (see :meth:`_is_lighting`) and is learnt, not reported.
        max_ignored_frac: a region whose box lies more than this much under ignore boxes is the
            fringe of a person or vehicle (its box drawn too tight), not an object of its own.
    """

    def __init__(
        self,
        *,
        long_term_s: float = 120.0,
        short_term_s: float = 5.0,
        diff_threshold: float = 30.0,
        min_area: float = 0.002,
        work_width: int = 320,
        max_static_s: float = 3600.0,
        global_change_frac: float = 0.35,
        max_shift_px: float = 8.0,
        ignore_margin: float = 0.1,
        ghost_edge_ratio: float = 0.5,
        lighting_ncc: float = 0.85,
        max_ignored_frac: float = 0.4,
    ) -> None:
        if not 0 < short_term_s < long_term_s:
            raise ValueError(
                f"DualBackground: need 0 < short_term_s < long_term_s, got {short_term_s} and {long_term_s}")
        if not 0 < diff_threshold <= 255:
            raise ValueError(f"DualBackground: diff_threshold must be in (0, 255], got {diff_threshold}")
        if not 0 < min_area <= 1:
            raise ValueError(f"DualBackground: min_area must be in (0, 1], got {min_area}")
        if work_width < 16:
            raise ValueError(f"DualBackground: work_width must be at least 16, got {work_width}")
        if not 0 < global_change_frac <= 1:
            raise ValueError(f"DualBackground: global_change_frac must be in (0, 1], got {global_change_frac}")
        self.long_term_s = long_term_s
        self.short_term_s = short_term_s
        self.diff_threshold = diff_threshold
        self.min_area = min_area
        self.work_width = work_width
        self.max_static_s = max_static_s
        self.global_change_frac = global_change_frac
        self.max_shift_px = max_shift_px
        self.ignore_margin = ignore_margin
        self._input_size: tuple[int, int] | None = None  # (w, h) of input images
        self._work_size: tuple[int, int] = (0, 0)
        self._long: GreyImage | None = None
        self._short: GreyImage | None = None
        self._known: BoolMask | None = None  # long-term pixels seen once clear of ignore boxes
        # pts each pixel began to differ from the long-term model; seconds it has been seen so
        self._onset: npt.NDArray[np.float64] | None = None
        self._seen_s: npt.NDArray[np.float64] | None = None
        self._window: npt.NDArray[np.float64] | None = None
        self._last_pts: float | None = None
        self._first_pts: float | None = None
        self._noise: GreyImage | None = None  # per-pixel mean |frame - long-term model| on background
        self._still_fg: BoolMask | None = None
        self._last_regions: list[StaticRegion] = []
        self._static_mask: BoolMask | None = None
        self.ghost_edge_ratio = ghost_edge_ratio
        self.lighting_ncc = lighting_ncc
        self.max_ignored_frac = max_ignored_frac
        self.global_changes = 0
        """How many times a global change made both models re-adapt."""
        self.ghosts_healed = 0
        """How many regions were found to be ghosts of departed objects and learnt as background."""
        self.relit = 0
        """How many regions were found to be a local light change and learnt as background."""
        self.last_shift: tuple[float, float] = (0.0, 0.0)
        """Camera shift (working pixels) compensated in the last update."""
        self.last_gain: float = 1.0
        """Brightness gain (frame / long-term model) divided out in the last update."""

    # ----------------------------------------------------------------- public
    @property
    def work_size(self) -> tuple[int, int]:
        """(width, height) of the working image; (0, 0) before the first update."""
        return self._work_size

    @property
    def static_mask(self) -> BoolMask | None:
        """Static-foreground pixels of the last update at working resolution (ignore boxes removed,
        no area filter): "static occupancy" evidence for other rules. None before the first update."""
        return self._static_mask

    def reset(self) -> None:
        """Forget both models; the next update starts afresh."""
        self._input_size = None
        self._long = self._short = self._seen_s = None
        self._noise = None
        self._onset = None
        self._known = None
        self._last_pts = None
        self._first_pts = None
        self._still_fg = None
        self._last_regions = []
        self._static_mask = None

    def update(self, image_bgr: npt.NDArray[np.uint8], pts: float,
               ignore_boxes: Sequence[Box] = ()) -> list[StaticRegion]:
        """Learn one frame taken at stream time ``pts`` (s); return the static regions in it.

        ``ignore_boxes`` are pixel boxes (x1, y1, x2, y2) of tracked people and vehicles in
        ``image_bgr``. A repeated ``pts`` returns the previous result; a ``pts`` that goes
        backwards (stream reconnected) or a new image size restarts the models.
        """
        image = np.asarray(image_bgr)
        if image.ndim not in (2, 3) or image.shape[0] < 2 or image.shape[1] < 2:
            raise ValueError(f"DualBackground.update: expected an HxW or HxWx3 image, got shape {image.shape}")
        if not math.isfinite(pts):
            raise ValueError(f"DualBackground.update: pts must be finite, got {pts}")
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._last_pts is not None and pts == self._last_pts and size == self._input_size:
            return list(self._last_regions)
        if self._input_size != size or (self._last_pts is not None and pts < self._last_pts):
            self.reset()
            self._start(size)
        grey = self._prepare(image)
        ignore = self._ignore_mask(ignore_boxes)
        if self._long is None:
            self._first_frame(grey, ignore, pts)
            return []
        dt = pts - (self._last_pts if self._last_pts is not None else pts)
        self._last_pts = pts
        regions = self._step(grey, ignore, pts, dt)
        self._last_regions = regions
        return list(regions)

    # ---------------------------------------------------------------- helpers
    def _start(self, size: tuple[int, int]) -> None:
        w, h = size
        ww = min(self.work_width, w)
        wh = max(2, round(h * ww / w))
        self._input_size = size
        self._work_size = (ww, wh)
        self._window = None

    def _prepare(self, image: npt.NDArray[np.uint8]) -> GreyImage:
        """The frame as the models see it: grey, at the working size, blurred. Models of one camera
        (stall occupancy, each keep-clear zone) share it for the same picture (see :func:`_prepared`)."""
        return _prepared(image, self._work_size)

    def _ignore_mask(self, boxes: Sequence[Box]) -> BoolMask:
        assert self._input_size is not None
        ww, wh = self._work_size
        sx = ww / self._input_size[0]
        sy = wh / self._input_size[1]
        mask = np.zeros((wh, ww), np.uint8)
        for i, box in enumerate(boxes):
            values = [float(v) for v in box]
            if len(values) != 4 or not all(math.isfinite(v) for v in values):
                raise ValueError(f"DualBackground.update: ignore_boxes[{i}] must be 4 finite numbers, got {box!r}")
            x1, y1, x2, y2 = values
            mx = (x2 - x1) * self.ignore_margin
            my = (y2 - y1) * self.ignore_margin
            c1 = max(0, math.floor((x1 - mx) * sx))
            r1 = max(0, math.floor((y1 - my) * sy))
            c2 = min(ww, math.ceil((x2 + mx) * sx))
            r2 = min(wh, math.ceil((y2 + my) * sy))
            if c2 > c1 and r2 > r1:
                mask[r1:r2, c1:c2] = 1
        return mask.astype(bool)

    def _first_frame(self, grey: GreyImage, ignore: BoolMask, pts: float) -> None:
        self._long = grey.copy()
        self._short = grey.copy()
        self._known = ~ignore
        self._onset = np.full(grey.shape, np.nan, np.float64)
        self._seen_s = np.zeros(grey.shape, np.float64)
        self._noise = np.full(grey.shape, min(MIN_DIFF, self.diff_threshold) / NOISE_K, np.float32)
        self._static_mask = np.zeros(grey.shape, bool)
        self._still_fg = np.zeros(grey.shape, bool)
        self._last_pts = pts
        self._first_pts = pts
        self._last_regions = []

    def _shift(self, grey: GreyImage, ref: GreyImage) -> tuple[float, float]:
        """Camera shift of ``grey`` against ``ref`` in working pixels, by phase correlation at half
        resolution (shifts under 1 px are left to the 3x3 tolerance of :meth:`_foreground`)."""
        a = cv2.pyrDown(ref).astype(np.float64)
        b = cv2.pyrDown(grey).astype(np.float64)
        if self._window is None or self._window.shape != a.shape:
            self._window = np.asarray(cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_64F),
                                      dtype=np.float64)
        (dx, dy), response = cv2.phaseCorrelate(a, b, self._window)
        dx, dy = 2 * dx, 2 * dy
        if response < 0.1 or math.hypot(dx, dy) > self.max_shift_px or math.hypot(dx, dy) < 1.0:
            return (0.0, 0.0)
        return (float(dx), float(dy))

    @staticmethod
    def _misfit(grey: GreyImage, ref: GreyImage) -> float:
        """Median absolute difference (every 2nd row and column)."""
        return float(np.median(np.abs(grey[::2, ::2] - ref[::2, ::2])))

    @staticmethod
    def _gain(grey: GreyImage, ref: GreyImage, where: BoolMask) -> float:
        """Median brightness ratio over ``where`` (every 2nd row and column: plenty for a median)."""
        sub = where[::2, ::2]
        if not sub.any():
            return 1.0
        return float(np.median((grey[::2, ::2][sub] + _EPS) / (ref[::2, ::2][sub] + _EPS)))

    def _foreground(self, grey: GreyImage, ref: GreyImage, threshold: float | npt.NDArray[np.floating]) -> BoolMask:
        """|grey - ref| > threshold (one number or one per pixel), measured against ref's 3x3 min and
        max (1 px sway tolerant)."""
        kernel = np.ones((3, 3), np.uint8)
        hi = cv2.dilate(ref, kernel)
        lo = cv2.erode(ref, kernel)
        out: BoolMask = (grey - hi > threshold) | (lo - grey > threshold)
        return out

    def _step(self, grey: GreyImage, ignore: BoolMask, pts: float, dt: float) -> list[StaticRegion]:
        assert self._long is not None and self._short is not None
        assert self._known is not None and self._onset is not None and self._seen_s is not None
        long, short, known, onset, seen = self._long, self._short, self._known, self._onset, self._seen_s
        # pixels of the long-term model never seen clear of a person/vehicle: learn them now
        fresh = ~known & ~ignore
        long[fresh] = grey[fresh]
        short[fresh] = grey[fresh]
        onset[fresh] = np.nan
        seen[fresh] = 0.0
        known |= fresh

        dx, dy = self._shift(grey, long)
        self.last_shift = (dx, dy)
        if dx or dy:
            m = np.array([[1, 0, -dx], [0, 1, -dy]], dtype=np.float32)
            warped = np.asarray(cv2.warpAffine(grey, m, self._work_size, flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REPLICATE), dtype=np.float32)
            if self._misfit(warped, long) < SHIFT_GAIN * self._misfit(grey, long):
                grey = warped
            else:  # a large new object biases phase correlation (1.1 px for a 100x100 px box)
                self.last_shift = (0.0, 0.0)
        clear = known & ~ignore
        gain_long = self._gain(grey, long, clear)
        gain_short = self._gain(grey, short, clear)
        self.last_gain = gain_long
        if not 0.2 <= gain_long <= 5.0:
            return self._readapt(grey, pts)
        norm_long = (grey + _EPS) / gain_long - _EPS
        norm_short = (grey + _EPS) / gain_short - _EPS
        threshold = self.threshold_map()
        fg_long = self._foreground(norm_long, long, threshold) & known
        fg_short = self._foreground(norm_short, short, threshold)
        n_clear = int(clear.sum())
        if n_clear and float((fg_long & clear).sum()) / n_clear > self.global_change_frac:
            return self._readapt(grey, pts)

        # onset: when each pixel began to differ from the long-term model (hysteresis at half the
        # threshold so one noisy frame does not restart it; kept while occluded by an ignore box),
        # and for how many seconds it has differed so while clear of every ignore box: a person
        # the detector misses for a frame or two shows up as a "static" silhouette whose onset is
        # old but who was seen only for those frames
        still_fg = self._foreground(norm_long, long, threshold / 2) & known
        self._still_fg = fg_long
        background = ~still_fg & ~ignore
        onset[background] = np.nan
        seen[background] = 0.0
        seen[still_fg & ~ignore & np.isfinite(onset)] += dt
        onset[fg_long & np.isnan(onset)] = pts

        # learn: short-term everywhere (a bag set down by a person standing next to it is learnt
        # while they stand there); long-term only where it looks
        # like background, and static objects older than max_static_s
        a_short = learning_rate(dt, self.short_term_s)
        a_long = learning_rate(dt, self._long_tau(pts))
        short += a_short * (grey - short)
        learn_long = known & ~ignore & ~fg_long
        residual = np.abs(norm_long[learn_long] - long[learn_long])
        long[learn_long] += a_long * (grey[learn_long] - long[learn_long])
        assert self._noise is not None
        self._noise[learn_long] += a_long * (residual - self._noise[learn_long])
        expired = known & ~ignore & fg_long & (pts - onset > self.max_static_s)
        if expired.any():
            long[expired] = short[expired]
            onset[expired] = np.nan
            seen[expired] = 0.0

        raw = (fg_long & ~fg_short & ~ignore & ~expired).astype(np.uint8)
        opened = cv2.morphologyEx(raw, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        static = np.asarray(closed, dtype=np.uint8) & (~ignore).astype(np.uint8)
        self._static_mask = static.astype(bool)
        return self._regions(static, norm_long, long, ignore)

    def threshold_map(self) -> GreyImage:
        """Per-pixel foreground threshold (grey levels): ``NOISE_K`` x the pixel's own measured
        noise (mean absolute difference of the frame from the long-term model while it showed
        background), between ``MIN_DIFF`` and ``diff_threshold``. A new pixel starts at
        ``diff_threshold`` and earns a lower one by staying quiet."""
        if self._noise is None:
            return np.full((self._work_size[1], self._work_size[0]), self.diff_threshold, np.float32)
        out: GreyImage = np.clip(NOISE_K * self._noise, min(MIN_DIFF, self.diff_threshold),
                                 self.diff_threshold).astype(np.float32)
        return out

    def _long_tau(self, pts: float) -> float:
        """Time constant of the long-term model now: its age while younger than ``long_term_s``
        (a running mean of every frame so far, never faster than the short-term model), then
        ``long_term_s``. A model started from one frame would otherwise keep that frame's passing
        light for minutes: on the AVSS platform the first frame has a departing train's shadow on the
        platform edge, which reads as a new bright object there for 40 s at a fixed 120 s constant."""
        age = pts - (self._first_pts if self._first_pts is not None else pts)
        return min(self.long_term_s, max(WARMUP_FLOOR * self.short_term_s, age))

    def still_there(self, xyxy: Box, ignore_boxes: Sequence[Box] = ()) -> float:
        """Share (0..1) of the working pixels in the input-pixel box ``xyxy`` that, in the last update,
        still differed from the long-term background (by the full threshold: the hysteresis half
        held the floor under the wheeled-away AVSS suitcase) or lay under an ignore box: a reported object
        hidden by passers-by or a train still scores high; one taken away scores low, its pixels
        back to the background. 0 before the first update."""
        if self._still_fg is None or self._input_size is None:
            return 0.0
        ww, wh = self._work_size
        sx, sy = ww / self._input_size[0], wh / self._input_size[1]
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        c1, r1 = max(0, math.floor(x1 * sx)), max(0, math.floor(y1 * sy))
        c2, r2 = min(ww, math.ceil(x2 * sx)), min(wh, math.ceil(y2 * sy))
        if c2 <= c1 or r2 <= r1:
            return 0.0
        hidden = self._still_fg[r1:r2, c1:c2] | self._ignore_mask(ignore_boxes)[r1:r2, c1:c2]
        return float(hidden.mean())

    def _readapt(self, grey: GreyImage, pts: float) -> list[StaticRegion]:
        assert self._long is not None and self._short is not None
        assert self._onset is not None and self._seen_s is not None
        self.global_changes += 1
        self._long[:] = grey
        self._short[:] = grey
        self._onset[:] = np.nan
        self._seen_s[:] = 0.0
        self._static_mask = np.zeros(grey.shape, bool)
        self._still_fg = np.zeros(grey.shape, bool)
        return []

    def _regions(self, static: npt.NDArray[np.uint8], now: GreyImage, long: GreyImage,
                 ignore: BoolMask) -> list[StaticRegion]:
        assert self._input_size is not None and self._short is not None
        assert self._onset is not None and self._seen_s is not None
        onset, seen = self._onset, self._seen_s
        ww, wh = self._work_size
        w, h = self._input_size
        sx, sy = w / ww, h / wh
        min_px = self.min_area * ww * wh
        _, labels, raw_stats, _ = cv2.connectedComponentsWithStats(static, connectivity=8)
        stats = np.asarray(raw_stats, dtype=np.int32)
        finite = np.isfinite(onset) & (labels > 0)
        n_labels = int(stats.shape[0])
        counts = np.bincount(labels[finite], minlength=n_labels).astype(np.float64)
        sums = np.bincount(labels[finite], weights=onset[finite], minlength=n_labels)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_onset = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        groups = _group_nearby(stats[1:], mean_onset[1:], gap=max(2, round(MERGE_GAP * ww)))
        big = [g for g in groups if sum(int(stats[1 + i, cv2.CC_STAT_AREA]) for i in g) >= min_px]
        if not big:
            return []
        grad_now, grad_long = _gradient(now), _gradient(long)
        regions: list[StaticRegion] = []
        for group in big:
            members = stats[[1 + i for i in group]]
            x, y = int(members[:, 0].min()), int(members[:, 1].min())
            bw = int((members[:, 0] + members[:, 2]).max()) - x
            bh = int((members[:, 1] + members[:, 3]).max()) - y
            area = int(members[:, 4].sum())
            if ignore[y:y + bh, x:x + bw].mean() > self.max_ignored_frac:
                continue  # the fringe of a person or vehicle the detector boxed too tightly
            pix = np.isin(labels, [1 + i for i in group]) if len(group) > 1 else labels == 1 + group[0]
            ghost = self._is_ghost(pix, now, long, grad_now, grad_long, ignore)
            if ghost or self._is_lighting(pix, now, long):
                # the long-term model still shows something that has gone, or the same surface in
                # other light: learn what is there now
                times = onset[pix]
                median = float(np.median(times[np.isfinite(times)])) if np.isfinite(times).any() else math.nan
                heal = pix & ~(np.abs(onset - median) > TOGETHER_S)  # NaN onsets heal too
                if ghost:
                    heal &= self._blends(pix, now, ignore)
                long[heal] = self._short[heal]
                onset[heal] = np.nan
                seen[heal] = 0.0
                if ghost:
                    self.ghosts_healed += 1
                else:
                    self.relit += 1
                continue
            times = onset[pix]
            times = times[np.isfinite(times)]
            if times.size == 0:
                continue
            x1, y1 = math.floor(x * sx), math.floor(y * sy)
            x2, y2 = min(w, math.ceil((x + bw) * sx)), min(h, math.ceil((y + bh) * sy))
            crop = pix[y:y + bh, x:x + bw].astype(np.uint8)
            mask = cv2.resize(crop, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST).astype(bool)
            regions.append(StaticRegion(
                xyxy=(float(x1), float(y1), float(x2), float(y2)),
                area_frac=area / (ww * wh),
                static_since_pts=float(np.median(times)),
                seen_s=float(np.median(seen[pix])),
                mask=mask,
                contrast=float(np.mean(np.abs(now[pix] - long[pix]))),
            ))
        return regions

    def _blends(self, pix: BoolMask, now: GreyImage, ignore: BoolMask) -> BoolMask:
        """Pixels of a ghost region that look like its surroundings now (within ``diff_threshold``
        of the ring's median): the revealed background. The rest is something new that the
        region happened to touch (on the AVSS platform a train's ghost touched the dark suitcase
        just set down; healed whole, the suitcase became background) and is left to be judged
        on its own next frame."""
        u8 = pix.astype(np.uint8)
        near = cv2.dilate(u8, np.ones((5, 5), np.uint8)).astype(bool)
        ring = cv2.dilate(u8, np.ones((9, 9), np.uint8)).astype(bool) & ~near & ~ignore
        if not ring.any():
            return pix
        out: BoolMask = np.abs(now - float(np.median(now[ring]))) <= self.diff_threshold
        return out

    def _is_lighting(self, pix: BoolMask, now: GreyImage, long: GreyImage) -> bool:
        """A region that shows the long-term model's own texture, only brighter or darker, is the
        same surface in other light (a shadow, a lamp, part of the frame lit). Light multiplies:
        the frame must correlate with the model (normalised cross-correlation >= ``lighting_ncc``)
        AND keep its relative contrast (std / mean within 25% of the model's), so an object that
        happens to line up with a road marking is not taken for light. The model must be
        textured (grey-level spread >= 4): on a flat surface light cannot be told from an object."""
        a = now[pix].astype(np.float64) + _EPS
        b = long[pix].astype(np.float64) + _EPS
        if a.size < 16 or b.std() < 4.0 or a.std() < 1e-6:
            return False
        ncc = float(np.mean((a - a.mean()) * (b - b.mean())) / (a.std() * b.std()))
        contrast_ratio = (a.std() / a.mean()) / (b.std() / b.mean())
        return ncc >= self.lighting_ncc and 0.8 <= contrast_ratio <= 1.25

    def _is_ghost(self, pix: BoolMask, now: GreyImage, long: GreyImage, grad_now: GreyImage,
                  grad_long: GreyImage, ignore: BoolMask) -> bool:
        """A "ghost": something that was in the long-term model has left (a car parked since
        before the first frame drives off), rather than something new that arrived. Either test:

        * outline: on the 1-px band around the region the model has a contour (edges standing out
          from its texture a few pixels further out, so a hole-riddled piece of a uniform object
          on a textured road is not taken for one) and the frame's edges there are weaker than
          ``ghost_edge_ratio`` times the model's;
        * contrast: in the model the region stands out from the ring of pixels around it (by at
          least a third of ``diff_threshold``), in the frame it stands out less than
          ``ghost_edge_ratio`` times as much — the revealed background blends with its
          surroundings, a new object does not.
        """
        u8 = pix.astype(np.uint8)
        band = cv2.morphologyEx(u8, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
        near = cv2.dilate(u8, np.ones((5, 5), np.uint8)).astype(bool)
        ring = cv2.dilate(u8, np.ones((9, 9), np.uint8)).astype(bool) & ~near
        if self._still_fg is not None and ring.any() and float(self._still_fg[ring].mean()) > GHOST_RING_FG:
            return False  # a piece of a larger new object (its surroundings are new too), not a ghost
        long_band = float(grad_long[band].mean())
        long_ring = float(grad_long[ring].mean()) if ring.any() else 0.0
        if long_band > 1.5 * long_ring and float(grad_now[band].mean()) < self.ghost_edge_ratio * long_band:
            return True
        clear_ring = ring & ~ignore
        if not clear_ring.any():
            return False
        stands_out_long = abs(float(long[pix].mean()) - float(long[clear_ring].mean()))
        stands_out_now = abs(float(now[pix].mean()) - float(now[clear_ring].mean()))
        return stands_out_long >= self.diff_threshold / 3 and stands_out_now < self.ghost_edge_ratio * stands_out_long
