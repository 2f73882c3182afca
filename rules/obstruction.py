"""Fallen branches and obstructions: a large new object that appears in a keep-clear zone and stays.

No COCO detector knows a broken branch or a pile of debris by name, so this rule does not look for
a class: it asks the camera's :class:`~rules.background.DualBackground` for *static regions*
(new since the long-term background, still for longer than the short-term one) and reports each
one whose ground point (bottom centre of its box) lies in the zone and that has been seen there,
clear of people and vehicles, for at least ``zone.limit_s`` (``StaticRegion.seen_s``) while the
zone's schedule is active (the analyzer applies schedules; off schedule this rule is still fed, so
the background keeps learning, and its findings are dropped). A region must also lie at least
``IN_ZONE_SHARE`` inside the zone. Once reported, a region is reported on every frame it is still
there, and while it is hidden (people, a train in front of it: its box still not background, see
``HOLD_SHARE``) its last finding is repeated, so passers-by never close its incident; taken away,
its place turns back to background and the incident closes after the zone's grace.
``started_pts`` is when the object arrived (``StaticRegion.static_since_pts``). Tracks and detections of
``zone.ignore_classes`` (people, vehicles) are only used to tell the background model what to
ignore — a parked car is the parking rule's business, a person sitting down is nobody's — and for
that the analyzer gives the weaker detections too, down to ``detector.ignore_score`` (0.2): on the
SOC PETS frame a seated person scored 0.29 against the 0.3 threshold was otherwise a static object.

Each finding is typed by a documented colour-and-texture heuristic (:func:`vegetation_signals`):

* ``green_brown_share`` — fraction of the region's pixels whose hue is foliage green
  (OpenCV hue 30..90, i.e. 60°..180°, saturation >= 50, value >= 40) or bark/dead-leaf brown
  (hue 5..25, saturation >= 60, value 30..200);
* ``edge_density`` — fraction of the region's inner pixels (its mask eroded by 2 px, so the
  object's own outline does not count) that are Canny edges (thresholds 60/150) in the frame:
  twigs and leaves are busy, boxes, bags and barriers are smooth. A region with under 100 inner
  pixels has no measurable texture (0): too small to be told from its outline, and too small
  to be a fallen branch anyway;
* ``vegetation_score`` = min(1, green_brown_share / 0.3, edge_density / 0.06) — it reaches 1
  only when both the colour and the texture say "vegetation". Score 1 -> ``fallen_branch``,
  otherwise ``obstruction``.

A region keeps the place and start time it was first reported with, so one object gives one
incident even when its outline wobbles or grows from frame to frame. Its type is the majority of
the heuristic's verdicts on the whole (merged) region over the frames it was reported: it may
change, which the lifecycle turns into an ``updated`` event of the same incident. The evidence
states the region's ``contrast`` (mean grey difference from the long-term background), and, from a
background model with ``low_contrast`` (0 otherwise), its ``colour_contrast`` (mean chroma change),
``texture_change`` (mean gradient-magnitude change) and ``faint_share`` (share of its pixels found
only by those low-contrast cues).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from camera_config.schema import KeepClearZone
from core.coco import CLASS_ID
from core.events import Evidence, EvidenceBox, IncidentType
from core.types import Detections, Frame, Track
from pipeline.zones import build_zone_mask
from rules.background import DualBackground, StaticRegion
from rules.findings import Finding

Box = tuple[float, float, float, float]

GREEN_HUE = (30, 90)
BROWN_HUE = (5, 25)
VEGETATION_COLOUR_MIN = 0.3
VEGETATION_EDGE_MIN = 0.06
CANNY_THRESHOLDS = (60, 150)
TIME_TOLERANCE_S = 1e-3
"""Sums of frame intervals (0.2 s x 50) fall short of the limit by rounding; this absorbs it."""
MIN_TEXTURE_PX = 100
"""A region with fewer inner pixels than this has no measurable texture (edge density 0)."""
MATCH_IOU = 0.3
"""A region this much overlapping a remembered one is the same object."""
IN_ZONE_SHARE = 1 / 3
"""A region must have at least this share of its pixels inside the zone, besides its ground point:
on the AVSS platform a train's region over the track (box 13..223 x 13..255 px, 8% of it on the
platform) had its bottom centre just inside the platform zone. An upright object at the zone's
far edge sticks out above it, so not a half."""
HOLD_SHARE = 0.5
"""A reported object whose box still differs from the long-term background (or lies under people,
vehicles) over at least this share is hidden, not gone: its finding holds. On the AVSS platform
the suitcase's box scores 0.8-1.0 while trains and passers-by hide it and under 0.2 once it is
wheeled away (the floor is back); half is between the two."""


@dataclass(frozen=True, slots=True)
class VegetationSignals:
    green_brown_share: float
    edge_density: float

    @property
    def score(self) -> float:
        return min(1.0, self.green_brown_share / VEGETATION_COLOUR_MIN, self.edge_density / VEGETATION_EDGE_MIN)

    @property
    def is_vegetation(self) -> bool:
        return self.score >= 1.0


def vegetation_signals(image_bgr: npt.NDArray[np.uint8], region: StaticRegion) -> VegetationSignals:
    """Colour and texture of ``region`` in ``image_bgr`` (see the module docstring)."""
    x1, y1, x2, y2 = (int(v) for v in region.xyxy)
    crop = image_bgr[y1:y2, x1:x2]
    if crop.size == 0:
        return VegetationSignals(0.0, 0.0)
    mask = region.mask if region.mask is not None and region.mask.shape == crop.shape[:2] \
        else np.ones(crop.shape[:2], bool)
    if not mask.any():
        return VegetationSignals(0.0, 0.0)
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    green = (h >= GREEN_HUE[0]) & (h <= GREEN_HUE[1]) & (s >= 50) & (v >= 40)
    brown = (h >= BROWN_HUE[0]) & (h <= BROWN_HUE[1]) & (s >= 60) & (v >= 30) & (v <= 200)
    share = float((green | brown)[mask].mean())
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if inner.sum() < MIN_TEXTURE_PX:
        return VegetationSignals(share, 0.0)  # too small to tell texture from its own outline
    edges = cv2.Canny(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), *CANNY_THRESHOLDS) > 0
    return VegetationSignals(share, float(edges[inner].mean()))


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Known:
    """A static region the rule has seen before: its first start time and, once reported, its
    type and place."""

    xyxy: Box
    since: float
    last_seen: float
    type: IncidentType | None = None
    """The majority type so far (see ``vegetation_votes``); None until first reported."""
    place: tuple[float, float] | None = None
    """Normalised ground point when first reported, then kept (the outline may still grow)."""
    vegetation_votes: int = 0
    votes: int = 0
    """Frames in which the whole region was typed vegetation, out of frames it was typed: the type
    is the majority, so it may change (an ``updated`` event) but one object stays one incident."""
    region_pts: float = 0.0
    """When it was last seen as a region of its own (not hidden)."""
    last: Finding | None = None
    """The last finding made from the region itself, repeated while the object is hidden."""


class ObstructionRule:
    """One keep_clear zone of one camera (the :class:`rules.findings.Rule` protocol).

    ``background`` may be shared with other rules of the camera (it is updated once per frame
    pts); by default the rule builds its own from the zone's ``long_term_s``, ``short_term_s``,
    ``diff_threshold`` and ``min_area``.
    """

    def __init__(self, zone: KeepClearZone, frame_size: tuple[int, int],
                 background: DualBackground | None = None) -> None:
        self.zone = zone
        self.zone_id = zone.id
        self.frame_size = frame_size
        self.mask = build_zone_mask(zone, *frame_size)
        self.background = background or DualBackground(
            long_term_s=zone.long_term_s, short_term_s=zone.short_term_s,
            diff_threshold=zone.diff_threshold, min_area=zone.min_area, low_contrast=zone.low_contrast)
        self._ignore_ids = frozenset(CLASS_ID[name] for name in zone.ignore_classes)
        self._known: list[_Known] = []
        self.last_regions: list[StaticRegion] = []
        """Every static region of the last frame, in the zone or not (for engineers tuning a camera)."""
        self.weak_detections: Detections | None = None
        """Set by the analyzer before each update (:class:`rules.registry.WeakFed`): the frame's
        detections down to ``detector.ignore_score``, read for people and vehicles instead of
        ``update``'s thresholded ones. None (a rule fed by hand): ``update``'s detections."""

    def ignore_boxes(self, tracks: Sequence[Track], detections: Detections) -> list[Box]:
        """Boxes of people and vehicles (``zone.ignore_classes``) from this frame's tracks and
        detections (the weak ones when the analyzer gave them)."""
        boxes: list[Box] = [t.xyxy for t in tracks if t.class_id in self._ignore_ids]
        if self.weak_detections is not None:
            detections = self.weak_detections
        for xyxy, class_id in zip(detections.xyxy, detections.class_id, strict=True):
            if int(class_id) in self._ignore_ids:
                x1, y1, x2, y2 = (float(v) for v in xyxy)
                boxes.append((x1, y1, x2, y2))
        return boxes

    def update(self, frame: Frame, tracks: Sequence[Track], detections: Detections) -> list[Finding]:
        """Feed one analysed frame; return a finding per static object in the zone past its limit."""
        if (frame.width, frame.height) != self.frame_size:
            raise ValueError(f"zone {self.zone_id!r}: frame of camera {frame.camera_id!r} is "
                             f"{frame.width}x{frame.height}, rule was built for "
                             f"{self.frame_size[0]}x{self.frame_size[1]}")
        regions = self.background.update(frame.image, frame.pts, self.ignore_boxes(tracks, detections))
        self.last_regions = regions
        in_zone = [r for r in regions if self._in_zone(r)]
        known = [self._remember(r, frame.pts) for r in in_zone]
        findings = []
        supported: set[int] = set()
        for region, memory in zip(in_zone, known, strict=True):
            if memory.type is None and region.seen_s < self.zone.limit_s - TIME_TOLERANCE_S:
                continue
            if id(memory) in supported:
                continue  # a second piece of an object already reported this frame
            supported.add(id(memory))
            findings.append(self._finding(frame, region, memory))
        findings.extend(self._hidden(frame, supported, self.ignore_boxes(tracks, detections)))
        self._forget(frame.pts)
        return findings

    def _in_zone(self, region: StaticRegion) -> bool:
        """Ground point in the zone and at least ``IN_ZONE_SHARE`` of the region's pixels too."""
        if not self.mask.contains([region.ground_point])[0]:
            return False
        x1, y1, x2, y2 = (int(v) for v in region.xyxy)
        inside = self.mask.mask[y1:y2, x1:x2]
        pix = region.mask if region.mask is not None and region.mask.shape == inside.shape \
            else np.ones(inside.shape, bool)
        return bool(pix.any()) and float(inside[pix].mean()) >= IN_ZONE_SHARE

    def _hidden(self, frame: Frame, supported: set[int], ignore: Sequence[Box]) -> list[Finding]:
        """Findings of reported objects not seen as a region this frame whose place is still not
        background (people, a train in front of them): hidden, not gone (see ``HOLD_SHARE``)."""
        held = []
        for memory in self._known:
            if memory.last is None or id(memory) in supported:
                continue
            share = self.background.still_there(memory.xyxy, ignore)
            if share < HOLD_SHARE:
                continue
            memory.last_seen = frame.pts
            last = memory.last
            durations = dict(last.evidence.durations)
            durations["since_arrival_s"] = round(frame.pts - memory.since, 3)
            durations["hidden_s"] = round(frame.pts - memory.region_pts, 3)
            held.append(Finding(type=last.type, zone_id=last.zone_id, place=last.place,
                                started_pts=last.started_pts, severity=last.severity,
                                evidence=last.evidence.model_copy(update={"durations": durations})))
        return held

    def _remember(self, region: StaticRegion, pts: float) -> _Known:
        best = max(self._known, key=lambda k: _iou(k.xyxy, region.xyxy), default=None)
        if best is None or _iou(best.xyxy, region.xyxy) < MATCH_IOU:
            best = _Known(region.xyxy, region.static_since_pts, pts)
            self._known.append(best)
        best.xyxy = region.xyxy
        best.since = min(best.since, region.static_since_pts)
        best.last_seen = pts
        best.region_pts = pts
        return best

    def _forget(self, pts: float) -> None:
        """Drop regions unseen for longer than the zone's close grace (the incident has closed)."""
        self._known = [k for k in self._known if pts - k.last_seen <= self.zone.close_grace_s]

    def _finding(self, frame: Frame, region: StaticRegion, memory: _Known) -> Finding:
        veg = vegetation_signals(frame.image, region)
        w, h = self.frame_size
        if memory.place is None:
            gx, gy = region.ground_point
            memory.place = (gx / w, min(gy, h) / h)
        memory.votes += 1
        memory.vegetation_votes += int(veg.is_vegetation)
        memory.type = "fallen_branch" if 2 * memory.vegetation_votes > memory.votes else "obstruction"
        zone = self.zone
        evidence = Evidence(
            boxes=(EvidenceBox(label="static_region", score=1.0, xyxy=region.xyxy),),
            durations={"static_s": round(region.seen_s, 3), "since_arrival_s": round(frame.pts - memory.since, 3)},
            signals={"area_frac": round(region.area_frac, 5),
                     "contrast": round(region.contrast, 2),
                     "colour_contrast": round(region.colour_contrast, 2),
                     "texture_change": round(region.texture_change, 2),
                     "faint_share": round(region.faint_share, 4),
                     "vegetation_score": round(veg.score, 4),
                     "green_brown_share": round(veg.green_brown_share, 4),
                     "edge_density": round(veg.edge_density, 4)},
            thresholds={"limit_s": zone.limit_s, "min_area": zone.min_area,
                        "diff_threshold": zone.diff_threshold, "long_term_s": zone.long_term_s,
                        "short_term_s": zone.short_term_s,
                        "vegetation_colour_min": VEGETATION_COLOUR_MIN,
                        "vegetation_edge_min": VEGETATION_EDGE_MIN},
            frame_size=(w, h),
        )
        memory.last = Finding(type=memory.type, zone_id=zone.id, place=memory.place,
                              started_pts=memory.since, severity=zone.severity, evidence=evidence)
        return memory.last

    def debug_state(self, pts: float) -> dict[str, object]:
        """What the rule sees now, for engineers (``patrol replay --trace/--debug-video``): every
        static region of the last frame (in the zone or not) with its static clock, the reported
        objects held while hidden, and why each fires or not. Call right after :meth:`update`."""
        items: list[dict[str, object]] = []
        shown: set[int] = set()
        for r in self.last_regions:
            box = [round(float(v), 1) for v in r.xyxy]
            item: dict[str, object] = {"id": f"r{len(items)}", "box": box, "label": "static_region",
                                       "clock_s": round(r.seen_s, 3), "limit_s": self.zone.limit_s,
                                       "area_frac": round(r.area_frac, 5), "fires": False}
            known = max(self._known, key=lambda k: _iou(k.xyxy, r.xyxy), default=None)
            if not self._in_zone(r):
                item["why"] = "outside the zone"
            elif known is not None and _iou(known.xyxy, r.xyxy) >= MATCH_IOU and known.type is not None:
                shown.add(id(known))
                item.update(fires=True, label=known.type, why=f"fires: {known.type}, static {r.seen_s:.1f} s")
            else:
                item["why"] = f"static {r.seen_s:.1f} s < limit {self.zone.limit_s:g} s"
            items.append(item)
        for k in self._known:
            if k.last is not None and id(k) not in shown and k.last_seen == pts:
                items.append({"id": f"k{len(items)}", "box": [round(float(v), 1) for v in k.xyxy],
                              "label": k.type or "obstruction", "clock_s": round(pts - k.since, 3),
                              "limit_s": self.zone.limit_s, "fires": True,
                              "why": "fires: reported object hidden, its place is not background"})
        return {"zone": self.zone_id, "rule": "obstruction", "items": items}
