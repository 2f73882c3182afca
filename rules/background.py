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

**Low-contrast mode** (``low_contrast=True``, off by default). The grey model needs a difference
of ``MIN_DIFF`` (18) grey levels: the ABODA backpack faded to a mean 18.8 grey levels is lost
(with this mode it fires, and at 16.2 too). This
mode adds, per pixel and each against the pixel's own measured noise (``NOISE_K`` x a running mean
absolute residual, learnt where the pixel shows background):

* colour: the YCrCb chroma (Cr, Cb, gain-normalised around neutral) differs by over ``CHROMA_MIN``;
* texture: the 3x3 Sobel gradient magnitude differs by over ``TEXTURE_MIN`` where the grey
  difference is at least half the low floor;
* a lower grey floor, ``LOW_DIFF`` (10), except in a person's halo (``HALO``: beside and below an
  ignore box, for ``HALO_HOLD_S`` after it was seen), where reflections and shadows fall: there a
  faint change counts for nothing, and is not learnt either (it may be a bag just set down);
* persistence: a pixel is static only after ``CONFIRM_S`` of accumulated static evidence (growing
  by each frame interval, decaying twice as fast, frozen under ignore boxes), so one frame never
  makes a static pixel and one frame's dropout never removes one;
* a local light change must keep its colour too (``LIGHT_CHROMA_KEEP``), judged without the
  region's rim.

Its known limit (measured 2026-12-02, 2 fps): on the AVSS platform's polished floor the suitcase's
own reflection below it (contrast 15-17) becomes two more obstructions (82.6-171.8 s and
83.0-95.5 s) besides the suitcase's; on the SOC triplets it finds more of
each object and more of the other changes (whole-mask IoU EPFL 0.80, PETS 0.13, avss 0.03,
cantata 0.57). It costs about twice the grey model (9.4-10.9 against 4.0-5.2 ms a 960x540 frame, 2 shared cores). Use it
for cameras on quiet ground without reflective floors; ``still_there`` still uses the grey
threshold.

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
ChromaImage = npt.NDArray[np.float32]
"""2 x H x W: YCrCb Cr and Cb, each plane contiguous (OpenCV filters them fast one by one)."""
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
LOW_DIFF = 10.0
"""The lowest grey threshold away from people (see ``HALO``): a faint object on a quiet floor is
foreground from here, measured against each pixel's noise like ``MIN_DIFF``. Next to a person
(their reflection in a polished floor, their shadow) a pixel needs ``MIN_DIFF``."""
CHROMA_MIN = 16.0
"""The lowest chroma threshold (YCrCb Cr, Cb levels, the larger of the two, after the gain): a
coloured object as bright as its background is foreground by colour alone. Light and shadow
scale chroma with the brightness, which the gain takes out. Measured 2026-12-02 on the SOC
triplets: at 8 the colour fringes of the CANTATA lobby's palm (grey contrast 2-5) became static
objects (whole-mask IoU 0.43); at 12, 0.53; at 16, 0.61 (0.57 once light changes were judged
without their rim)."""
TEXTURE_MIN = 12.0
"""The lowest texture threshold (change of 3x3 Sobel gradient magnitude, after the gain): an object
that covers the floor's pattern (or brings its own) changes it; a shadow or a light keeps it.
A texture change counts where the grey difference is at least half of the pixel's low threshold."""
HALO = (0.5, 0.6)
"""Around each ignore box, this fraction of its width on each side and of its height below it is
the person's halo: their reflection and their shadow fall there. Only ``MIN_DIFF`` makes a pixel
foreground there: no low-contrast cue counts there, even for a pixel that differed before (on the
AVSS platform a man's reflection, flickering about 18 grey levels below his feet for 25 s, held
on by the faint cue while he stood and became a false object)."""
HALO_HOLD_S = 2.0
"""A halo stays this long after its box was last seen: the detector misses people for a frame or two."""
CONFIRM_S = 1.0
"""Static evidence (seconds of a pixel being foreground to the long-term model and background to
the short-term one, ``DualBackground._evidence``) a pixel needs before it is static; it grows by
each frame's interval and decays twice as fast, so one frame's verdict never makes a static pixel
and one frame's dropout never removes one (hysteresis: a static pixel stays static while its
evidence is above zero)."""
EVIDENCE_CAP_S = 4.0
"""Static evidence is capped at this: a pixel that stops being static leaves within 2 s."""
LIGHT_CHROMA_KEEP = 0.5
"""A region whose mean chroma change is over this share of its pixels' chroma thresholds is not a
light change, however well its grey texture correlates with the background's (a real object
changes colour or texture; a shadow keeps both)."""
_NO_CHROMA: ChromaImage = np.zeros((2, 0, 0), np.float32)
TIME_EPS_S = 1e-3  # sums of frame intervals fall short of a duration by rounding
_EPS = 1.0  # added to grey levels before taking ratios, so black pixels do not explode the gain


@dataclass(frozen=True, slots=True)
class _FaintCues:
    faint: BoolMask
    """Foreground to the long-term model by a low-contrast cue."""
    faint_short: BoolMask
    """Foreground to the short-term model by a low-contrast cue."""
    near: BoolMask
    """In a person's halo now or within ``HALO_HOLD_S``."""
    chroma_excess: GreyImage
    texture_excess: GreyImage
    chroma_t: GreyImage


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
    colour_contrast: float = 0.0
    """Mean chroma difference (YCrCb levels, the larger of Cr and Cb) of its pixels from the background."""
    texture_change: float = 0.0
    """Mean change of the gradient magnitude (3x3 Sobel) of its pixels against the background's."""
    faint_share: float = 0.0
    """Share of its pixels found by the low-contrast cues only (grey below ``MIN_DIFF``, colour,
    texture), not by the grey difference that today's fixed-floor model needed."""

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


_last_chroma = threading.local()


def _prepared_chroma(image: npt.NDArray[np.uint8], work_size: tuple[int, int]) -> ChromaImage:
    """Chroma (YCrCb Cr and Cb planes; 128 for a grey input) of ``image`` at ``work_size``, blurred
    like the grey image; memoised per thread like :func:`_prepared`. Must not be modified."""
    memo = getattr(_last_chroma, "value", None)
    if memo is not None and memo[0]() is image and memo[1] == work_size:
        cached: ChromaImage = memo[2]
        return cached
    if image.ndim == 2:
        out: ChromaImage = np.full((2, work_size[1], work_size[0]), 128.0, np.float32)
    else:
        small = image
        if (image.shape[1], image.shape[0]) != work_size:
            small = np.asarray(cv2.resize(image, work_size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        planes = cv2.split(cv2.cvtColor(small, cv2.COLOR_BGR2YCrCb))[1:]
        out = np.stack([cv2.GaussianBlur(np.asarray(p, np.float32), (5, 5), 0) for p in planes]).astype(np.float32)
    out.flags.writeable = False
    try:
        _last_chroma.value = (weakref.ref(image), work_size, out)
    except TypeError:
        _last_chroma.value = None
    return out


def _excess(now: npt.NDArray[np.float32], ref: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """How far ``now`` lies outside the 3x3 min..max of ``ref`` (0 inside: 1 px sway tolerant);
    for a chroma image (2 x H x W), the larger of its two planes."""
    if now.ndim == 3:
        out: npt.NDArray[np.float32] = np.maximum(_excess(now[0], ref[0]), _excess(now[1], ref[1]))
        return out
    kernel = np.ones((3, 3), np.uint8)
    hi = cv2.dilate(ref, kernel)
    lo = cv2.erode(ref, kernel)
    result: npt.NDArray[np.float32] = np.maximum(np.maximum(now - hi, lo - now), np.float32(0.0))
    return result


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
        low_contrast: also find objects that differ little from their background: by colour
            (``CHROMA_MIN``), by texture (``TEXTURE_MIN``) and by a lower grey floor away from people
            (``LOW_DIFF``, ``HALO``), each against the pixel's own measured noise, made static only by
            accumulated evidence (``CONFIRM_S``); and a light change must keep its colour
            (``LIGHT_CHROMA_KEEP``). Off by default: on the AVSS platform it adds a false object
            (people far up the platform whom the detector misses leave faint reflections), see the
            module docstring.
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
        low_contrast: bool = False,
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
        self.low_contrast = low_contrast
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
        self._long_c: ChromaImage | None = None  # chroma of the long- and short-term models
        self._short_c: ChromaImage | None = None
        self._noise_c: GreyImage | None = None  # per-pixel mean chroma excess on background
        self._noise_t: GreyImage | None = None  # per-pixel mean gradient-magnitude excess on background
        self._evidence: npt.NDArray[np.float32] | None = None  # static evidence, seconds (CONFIRM_S)
        # the last update's chroma excess, gradient excess, strong-grey pixels, chroma thresholds
        self._cues: tuple[GreyImage, GreyImage, BoolMask, GreyImage] = (
            np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), np.zeros((0, 0), bool),
            np.zeros((0, 0), np.float32))
        self._near_pts: npt.NDArray[np.float64] | None = None  # when each pixel was last in a halo
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
        self._noise = self._noise_c = self._noise_t = None
        self._long_c = self._short_c = None
        self._evidence = None
        self._near_pts = None
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
        grey, chroma = self._prepare(image)
        ignore = self._ignore_mask(ignore_boxes)
        if self._long is None:
            self._first_frame(grey, chroma, ignore, pts)
            return []
        dt = pts - (self._last_pts if self._last_pts is not None else pts)
        self._last_pts = pts
        halo = self._ignore_mask(ignore_boxes, halo=True) if self.low_contrast else ignore
        regions = self._step(grey, chroma, ignore, halo, pts, dt)
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

    def _prepare(self, image: npt.NDArray[np.uint8]) -> tuple[GreyImage, ChromaImage]:
        """The frame as the models see it: grey and (with ``low_contrast``) chroma, at the working
        size, blurred. Models of one camera (stall occupancy, each keep-clear zone) share them for
        the same picture (see :func:`_prepared`). Without ``low_contrast`` the chroma is not computed
        (an empty array stands in for it)."""
        grey = _prepared(image, self._work_size)
        if not self.low_contrast:
            return grey, _NO_CHROMA
        return grey, _prepared_chroma(image, self._work_size)

    def _ignore_mask(self, boxes: Sequence[Box], *, halo: bool = False) -> BoolMask:
        """Working-resolution mask of ``boxes`` grown by ``ignore_margin`` on each side, or with
        ``halo`` by ``HALO`` (sideways and below: where a person's reflection and shadow fall)."""
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
            mx = (x2 - x1) * (HALO[0] if halo else self.ignore_margin)
            my = (y2 - y1) * self.ignore_margin
            below = (y2 - y1) * HALO[1] if halo else my
            c1 = max(0, math.floor((x1 - mx) * sx))
            r1 = max(0, math.floor((y1 - my) * sy))
            c2 = min(ww, math.ceil((x2 + mx) * sx))
            r2 = min(wh, math.ceil((y2 + below) * sy))
            if c2 > c1 and r2 > r1:
                mask[r1:r2, c1:c2] = 1
        return mask.astype(bool)

    def _first_frame(self, grey: GreyImage, chroma: ChromaImage, ignore: BoolMask, pts: float) -> None:
        self._long = grey.copy()
        self._short = grey.copy()
        self._long_c = chroma.copy()
        self._short_c = chroma.copy()
        self._noise_c = np.full(grey.shape, CHROMA_MIN / NOISE_K, np.float32)
        self._noise_t = np.full(grey.shape, TEXTURE_MIN / NOISE_K, np.float32)
        self._evidence = np.zeros(grey.shape, np.float32)
        self._near_pts = np.full(grey.shape, -np.inf, np.float64)
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
        resolution (shifts under 1 px are left to the 3x3 tolerance of :func:`_excess`)."""
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

    def _step(self, grey: GreyImage, chroma: ChromaImage, ignore: BoolMask, halo: BoolMask, pts: float,
              dt: float) -> list[StaticRegion]:
        assert self._long is not None and self._short is not None
        assert self._known is not None and self._onset is not None and self._seen_s is not None
        assert self._long_c is not None and self._short_c is not None and self._evidence is not None
        assert self._noise is not None and self._noise_c is not None and self._noise_t is not None
        assert self._near_pts is not None
        long, short, known, onset, seen = self._long, self._short, self._known, self._onset, self._seen_s
        long_c, short_c, evidence = self._long_c, self._short_c, self._evidence
        # pixels of the long-term model never seen clear of a person/vehicle: learn them now
        fresh = ~known & ~ignore
        if fresh.any():
            long[fresh] = grey[fresh]
            short[fresh] = grey[fresh]
            if self.low_contrast:
                long_c[:, fresh] = chroma[:, fresh]
                short_c[:, fresh] = chroma[:, fresh]
            onset[fresh] = np.nan
            seen[fresh] = 0.0
            evidence[fresh] = 0.0
            known |= fresh

        dx, dy = self._shift(grey, long)
        self.last_shift = (dx, dy)
        if dx or dy:
            m = np.array([[1, 0, -dx], [0, 1, -dy]], dtype=np.float32)
            warped = np.asarray(cv2.warpAffine(grey, m, self._work_size, flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_REPLICATE), dtype=np.float32)
            if self._misfit(warped, long) < SHIFT_GAIN * self._misfit(grey, long):
                grey = warped
                if self.low_contrast:
                    chroma = np.stack([cv2.warpAffine(plane, m, self._work_size, flags=cv2.INTER_LINEAR,
                                                      borderMode=cv2.BORDER_REPLICATE) for plane in chroma])
            else:  # a large new object biases phase correlation (1.1 px for a 100x100 px box)
                self.last_shift = (0.0, 0.0)
        clear = known & ~ignore
        gain_long = self._gain(grey, long, clear)
        gain_short = self._gain(grey, short, clear)
        self.last_gain = gain_long
        if not 0.2 <= gain_long <= 5.0:
            return self._readapt(grey, chroma, pts)
        norm_long = (grey + _EPS) / gain_long - _EPS
        norm_short = (grey + _EPS) / gain_short - _EPS
        strong_t = self.threshold_map()
        e_long, e_short = _excess(norm_long, long), _excess(norm_short, short)
        strong = e_long > strong_t
        if self.low_contrast:
            cues = self._faint_cues(grey, chroma, (e_long, e_short), (gain_long, gain_short), halo, pts)
            faint, near = cues.faint, cues.near
            fg_long = (strong | (faint & ~near)) & known
            # the short-term model has absorbed a pixel by the measure that made it foreground
            fg_short = np.where(strong, e_short > strong_t, cues.faint_short)
            still_fg = ((e_long > strong_t / 2) | (fg_long & faint)) & known
            learn_long = known & ~ignore & ~fg_long & ~(faint & near)
        else:
            fg_long = strong & known
            fg_short = e_short > strong_t
            still_fg = (e_long > strong_t / 2) & known
            learn_long = known & ~ignore & ~fg_long
        n_clear = int(clear.sum())
        if n_clear and float((strong & known & clear).sum()) / n_clear > self.global_change_frac:
            return self._readapt(grey, chroma, pts)

        # onset: when each pixel began to differ from the long-term model (hysteresis at half the
        # grey threshold so one noisy frame does not restart it; kept while occluded by an ignore
        # box), and for how many seconds it has differed so while clear of every ignore box: a person
        # the detector misses for a frame or two shows up as a "static" silhouette whose onset is
        # old but who was seen only for those frames
        self._still_fg = strong & known
        background = ~still_fg & ~ignore
        onset[background] = np.nan
        seen[background] = 0.0
        seen[still_fg & ~ignore & np.isfinite(onset)] += dt
        onset[fg_long & np.isnan(onset)] = pts

        # learn: short-term everywhere (a bag set down by a person standing next to it is learnt
        # while they stand there); long-term only where it looks like background (not a faint
        # change next to a person either: it may be an object they set down), and static objects
        # older than max_static_s
        a_short = learning_rate(dt, self.short_term_s)
        a_long = learning_rate(dt, self._long_tau(pts))
        short += a_short * (grey - short)
        # masked learning as arithmetic on a 0/a_long weight: boolean indexing costs ~1 ms an array
        rate = learn_long.astype(np.float32) * np.float32(a_long)
        if self.low_contrast:
            short_c += a_short * (chroma - short_c)
            self._learn_cues(grey, chroma, norm_long, gain_long, rate)
        self._noise += rate * (np.abs(norm_long - long) - self._noise)
        long += rate * (grey - long)
        expired = known & ~ignore & fg_long & (pts - onset > self.max_static_s)
        if expired.any():
            long[expired] = short[expired]
            if self.low_contrast:
                long_c[:, expired] = short_c[:, expired]
            onset[expired] = np.nan
            seen[expired] = 0.0

        # static evidence: seconds foreground to the long-term and background to the short-term
        # model, decaying twice as fast, frozen under ignore boxes (see CONFIRM_S)
        raw = fg_long & ~fg_short & ~ignore & ~expired
        candidate = raw
        if self.low_contrast:
            was_static = self._static_mask if self._static_mask is not None else np.zeros(raw.shape, bool)
            grown = np.minimum(evidence + np.float32(dt), np.float32(EVIDENCE_CAP_S))
            faded = np.maximum(evidence - np.float32(2 * dt), np.float32(0.0))
            evidence[:] = np.where(raw, grown, np.where(ignore, evidence, faded))
            candidate = fg_long & ~ignore & ~expired & (
                (evidence >= CONFIRM_S - TIME_EPS_S) | (was_static & (evidence > 0)))
        opened = cv2.morphologyEx(candidate.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        static = np.asarray(closed, dtype=np.uint8) & (~ignore).astype(np.uint8)
        self._static_mask = static.astype(bool)
        if not self.low_contrast:
            zero = np.zeros(strong.shape, np.float32)
            self._cues = (zero, zero, np.ones(strong.shape, bool), np.ones(strong.shape, np.float32))
        else:
            self._cues = (cues.chroma_excess, cues.texture_excess, strong, cues.chroma_t)
        return self._regions(static, norm_long, long, ignore)

    def _faint_cues(self, grey: GreyImage, chroma: ChromaImage, excess: tuple[GreyImage, GreyImage],
                    gains: tuple[float, float], halo: BoolMask, pts: float) -> _FaintCues:
        """The low-contrast cues of this frame (``low_contrast``): a faint grey difference, a chroma
        change, a texture change with some grey difference, each over the pixel's own noise.
        ``excess`` is the grey excess over the long- and short-term models, ``gains`` their gains."""
        assert self._long is not None and self._short is not None and self._near_pts is not None
        assert self._long_c is not None and self._short_c is not None
        assert self._noise_c is not None and self._noise_t is not None
        faint_t = self.threshold_map(faint=True)
        chroma_t = np.maximum(NOISE_K * self._noise_c, np.float32(CHROMA_MIN))
        texture_t = np.maximum(NOISE_K * self._noise_t, np.float32(TEXTURE_MIN))
        (e_long, e_short), (gain_long, gain_short) = excess, gains
        # light scales chroma's distance from neutral (128) as it scales brightness
        chroma_long = (chroma - 128.0) / gain_long + 128.0
        chroma_short = (chroma - 128.0) / gain_short + 128.0
        c_long = _excess(chroma_long, self._long_c)
        short_diff = np.abs(chroma_short - self._short_c)  # the short-term test needs no sway tolerance
        c_short = np.maximum(short_diff[0], short_diff[1])
        t_long = _excess(_gradient(grey) / gain_long, _gradient(self._long))
        faint = (e_long > faint_t) | (c_long > chroma_t) | ((t_long > texture_t) & (e_long > faint_t / 2))
        faint_short = (e_short > faint_t) | (c_short > chroma_t)
        # next to a person (now or in the last HALO_HOLD_S) a faint change counts for nothing: their
        # reflection and shadow fall there
        self._near_pts[halo] = pts
        near = pts - self._near_pts <= HALO_HOLD_S
        return _FaintCues(faint, faint_short, near, c_long, t_long, chroma_t)

    def _learn_cues(self, grey: GreyImage, chroma: ChromaImage, norm_long: GreyImage, gain_long: float,
                    rate: GreyImage) -> None:
        """Learn the long-term chroma and the chroma and texture noise where ``rate`` (0 or the
        long-term rate per pixel) says the pixel shows background."""
        assert self._long is not None and self._long_c is not None
        assert self._noise_c is not None and self._noise_t is not None
        chroma_long = (chroma - 128.0) / gain_long + 128.0
        diff = np.abs(chroma_long - self._long_c)
        residual_t = np.abs(_gradient(grey) / gain_long - _gradient(self._long))
        self._noise_c += rate * (np.maximum(diff[0], diff[1]) - self._noise_c)
        self._noise_t += rate * (residual_t - self._noise_t)
        self._long_c += rate * (chroma - self._long_c)

    def threshold_map(self, *, faint: bool = False) -> GreyImage:
        """Per-pixel grey foreground threshold (grey levels): ``NOISE_K`` x the pixel's own measured
        noise (mean absolute difference of the frame from the long-term model while it showed
        background), between ``MIN_DIFF`` (``LOW_DIFF`` with ``faint``: away from people) and
        ``diff_threshold``. A new pixel starts at ``MIN_DIFF`` and earns a lower one by staying quiet."""
        floor = min(LOW_DIFF if faint else MIN_DIFF, self.diff_threshold)
        if self._noise is None:
            return np.full((self._work_size[1], self._work_size[0]), self.diff_threshold, np.float32)
        out: GreyImage = np.clip(NOISE_K * self._noise, floor, self.diff_threshold).astype(np.float32)
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

    def _readapt(self, grey: GreyImage, chroma: ChromaImage, pts: float) -> list[StaticRegion]:
        assert self._long is not None and self._short is not None
        assert self._long_c is not None and self._short_c is not None and self._evidence is not None
        assert self._onset is not None and self._seen_s is not None
        self.global_changes += 1
        self._long[:] = grey
        self._short[:] = grey
        self._long_c[:] = chroma
        self._short_c[:] = chroma
        self._evidence[:] = 0.0
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
        c_long, t_long, strong, chroma_t = self._cues
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
            if ghost or self._is_lighting(pix, now, long, c_long, chroma_t):
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
                colour_contrast=float(np.mean(c_long[pix])),
                texture_change=float(np.mean(t_long[pix])),
                faint_share=float(np.mean(~strong[pix])),
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

    def _is_lighting(self, pix: BoolMask, now: GreyImage, long: GreyImage, chroma_excess: GreyImage,
                     chroma_t: GreyImage) -> bool:
        """A region that shows the long-term model's own texture, only brighter or darker, is the
        same surface in other light (a shadow, a lamp, part of the frame lit). Light multiplies:
        the frame must correlate with the model (normalised cross-correlation >= ``lighting_ncc``)
        AND keep its relative contrast (std / mean within 25% of the model's), so an object that
        happens to line up with a road marking is not taken for light. The model must be
        textured (grey-level spread >= 4): on a flat surface light cannot be told from an object.
        And it must keep its colour: a mean chroma change over ``LIGHT_CHROMA_KEEP`` of the pixels'
        chroma thresholds is an object, whatever the grey texture says. With ``low_contrast`` the
        region's 1-px rim is left out (when 16 pixels remain): the texture cue finds a shadow's edge,
        which is the floor on one side and shade on the other."""
        if self.low_contrast:
            inner = cv2.erode(pix.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            pix = inner if int(inner.sum()) >= 16 else pix
            if float(chroma_excess[pix].mean()) > LIGHT_CHROMA_KEEP * float(chroma_t[pix].mean()):
                return False
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
