"""Zone-focused detection: the detector also runs on tiles around a camera's zones, at native resolution.

A 1920x1080 frame reaches a 416-pixel network shrunk 4.6x: a vehicle 40 px long far down the street
arrives at under 9 px and is missed. Per camera, ``detector.regions`` (camera_config/schema.py) names
where to look closer; :class:`RegionPlanner` turns it into fixed tiles for a frame size (computed
once per camera and size), each at most the network input in size, so a tile runs at native
resolution or larger. :func:`detect_with_regions` puts every frame and its tiles into one
``detector.detect`` call — the worker's batch across cameras grows by the tiles, there is no second
loop — and :func:`merge_tiles` maps each tile's boxes back to the frame, drops those cut by an
inner tile edge (the neighbouring tile's overlap, or the whole frame, sees that object whole) and
merges tiles and whole frame with class-aware NMS (:func:`models.base.nms`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from camera_config.schema import Camera, CropBox, DetectorChoice, ZoneBase
from core.errors import ModelError
from core.types import Detections
from models.base import nms

log = logging.getLogger(__name__)

AUTO_MIN_SHRINK = 2.0
"""``auto`` looks closer only when the whole frame is shrunk more than this to the network input:
at 2x a 40-pixel vehicle still reaches the model at 20 px; at 2.3x (a 960x540 frame to 416 px) a
cargo tricycle scored 0.13-0.26 and was missed (issue 13), at 4.6x (1080p) it arrives at under 9 px."""

AUTO_MAX_TILES_PER_ZONE = 2
"""``auto`` tiles a zone only when it fits in this many tiles. A zone that needs more spans a large
part of the frame: it is near the camera, its objects are large and the whole frame finds them;
tiling it would cost a full inference per tile (a 1080p frame has room for 15). A far zone — the far
kerb, the junction — fits in one or two."""

MAX_TILES = 12
"""Tiles per frame at most, whatever the setting: each costs up to one inference (a 416x416 YOLOX-Nano
call is about 22 CPU-ms here); more than this is a config mistake, refused with the camera named."""

TILE_OVERLAP = 0.2
"""Neighbouring tiles overlap by this fraction of the network input side (83 px at 416): an object
up to that size cut by one tile's edge lies whole inside its neighbour."""

ZONE_MARGIN = 0.1
"""A zone's box grows by this fraction of the network input side on each side (42 px at 416)..."""

ZONE_MARGIN_ABOVE = 0.3
"""...and by this much above it: membership is tested at an object's ground point, so a vehicle in
the zone rises above the zone's top edge by its height."""

MIN_TILE = 0.5
"""A tile is at least this fraction of the network input side (when the frame allows): a small zone
is looked at with some context, magnified at most 2x."""

CONTAINED = 0.9
"""After NMS, a whole-frame box and a better tile box of its class (or the other way round), one lying
this much inside the other (their intersection over the smaller box's area), are the same object
seen at two scales — a far car's box from the whole frame around the tighter one from a tile has an IoU well
under the NMS threshold (seen on the shared street clips) — and is dropped. Not lower: two cars of
which one partly hides the other lay 0.76-0.8 inside each other on the same clips. Boxes of two tiles
are at one scale: NMS alone merges them (a tile may see a car and one it partly hides, nested)."""

EDGE_PX = 3.0
"""A tile's box within this many frame pixels of an inner tile edge (one that is not a frame edge)
is cut by it and dropped."""


@dataclass(frozen=True, slots=True)
class Tile:
    """A crop of the frame in pixels: ``image[y1:y2, x1:x2]``."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def size(self) -> tuple[int, int]:
        return self.x2 - self.x1, self.y2 - self.y1

    def contains(self, other: Tile) -> bool:
        return self.x1 <= other.x1 and self.y1 <= other.y1 and self.x2 >= other.x2 and self.y2 >= other.y2

    def crop(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        return image[self.y1:self.y2, self.x1:self.x2]


RegionSetting = str | tuple[CropBox, ...]
Area = tuple[float, float, float, float]
"""A part of the frame to tile, (x1, y1, x2, y2) in pixels."""


def shrink_factor(frame_size: tuple[int, int], input_size: tuple[int, int]) -> float:
    """How many times the whole frame is shrunk to fit the network input (letterbox)."""
    (fw, fh), (iw, ih) = frame_size, input_size
    return max(fw / iw, fh / ih)


def _spans(lo: float, hi: float, side: int, limit: int) -> list[tuple[int, int]]:
    """Intervals of at most ``side`` px covering [lo, hi] within [0, limit], overlapping by
    :data:`TILE_OVERLAP` of ``side``; a short interval grows to :data:`MIN_TILE` of ``side``."""
    lo, hi = max(0.0, lo), min(float(limit), hi)
    least = min(limit, max(1, round(MIN_TILE * side)))
    if hi - lo < least:
        mid = (lo + hi) / 2
        lo = min(max(0.0, mid - least / 2), limit - least)
        hi = lo + least
    length = hi - lo
    side = min(side, limit)
    if length <= side:
        return [(round(lo), round(hi))]
    step = side - TILE_OVERLAP * side
    n = math.ceil((length - side) / step) + 1
    pitch = (length - side) / (n - 1)  # evenly spread, each overlap at least TILE_OVERLAP
    return [(round(lo + k * pitch), round(lo + k * pitch) + side) for k in range(n)]


def tiles_of(area: tuple[float, float, float, float], frame_size: tuple[int, int],
             input_size: tuple[int, int]) -> list[Tile]:
    """Tiles of at most the network input size covering ``area`` (pixels, clipped to the frame)."""
    (fw, fh), (iw, ih) = frame_size, input_size
    xs = _spans(area[0], area[2], iw, fw)
    ys = _spans(area[1], area[3], ih, fh)
    return [Tile(x1, y1, x2, y2) for y1, y2 in ys for x1, x2 in xs]


def zone_area(zone: ZoneBase, frame_size: tuple[int, int],
              input_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A zone's bounding box in pixels with the margins objects standing in it need."""
    fw, fh = frame_size
    xs = [x * fw for x, _ in zone.polygon]
    ys = [y * fh for _, y in zone.polygon]
    mx, my = ZONE_MARGIN * input_size[0], ZONE_MARGIN * input_size[1]
    return min(xs) - mx, min(ys) - ZONE_MARGIN_ABOVE * input_size[1], max(xs) + mx, max(ys) + my


def plan_tiles(setting: RegionSetting, zones: Sequence[ZoneBase], frame_size: tuple[int, int],
               input_size: tuple[int, int], where: str = "camera") -> tuple[Tile, ...]:
    """The tiles ``setting`` (``detector.regions``) asks for on frames of ``frame_size``; ``()``
    when the whole frame is enough. ``where`` names the camera in errors."""
    if setting == "off" or setting == ():
        return ()
    if setting == "auto" and shrink_factor(frame_size, input_size) <= AUTO_MIN_SHRINK:
        return ()
    fw, fh = frame_size
    areas: list[tuple[str, Area, list[Tile]]] = []
    if isinstance(setting, tuple):
        for i, crop in enumerate(setting):
            x1, y1, x2, y2 = crop.box
            box = (x1 * fw, y1 * fh, x2 * fw, y2 * fh)
            areas.append((f"regions[{i}]", box, tiles_of(box, frame_size, input_size)))
    elif setting in ("auto", "zones"):
        for zone in zones:
            box = zone_area(zone, frame_size, input_size)
            tiles = tiles_of(box, frame_size, input_size)
            if setting == "auto" and len(tiles) > AUTO_MAX_TILES_PER_ZONE:
                continue  # a near, large zone: the whole frame sees its objects large enough
            areas.append((f"zone {zone.id!r}", box, tiles))
    else:
        raise ModelError(f"{where}: detector.regions: unknown setting {setting!r}")
    chosen: list[Tile] = []
    for _, _, tiles in _joined(areas, frame_size, input_size):
        for tile in tiles:
            if not any(t.contains(tile) for t in chosen):
                chosen = [t for t in chosen if not tile.contains(t)] + [tile]
    if len(chosen) > MAX_TILES:
        names = ", ".join(f"{name}: {len(tiles)}" for name, _, tiles in areas)
        raise ModelError(f"{where}: detector.regions asks for {len(chosen)} tiles of at most {input_size[0]}x"
                         f"{input_size[1]} px on {fw}x{fh} frames ({names}); at most {MAX_TILES} (each costs an "
                         f"inference): use smaller crop boxes or 'auto'")
    return tuple(chosen)


def _joined(areas: list[tuple[str, Area, list[Tile]]], frame_size: tuple[int, int],
            input_size: tuple[int, int]) -> list[tuple[str, Area, list[Tile]]]:
    """Overlapping areas tiled as one when that takes no more tiles than tiling them apart (two zones
    side by side would otherwise get two sets of near-identical tiles)."""
    out = list(areas)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                (na, a, ta), (nb, b, tb) = out[i], out[j]
                union = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                tiles = tiles_of(union, frame_size, input_size)
                if len(tiles) <= len(ta) + len(tb):
                    out[i] = (f"{na} + {nb}", union, tiles)
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


class RegionPlanner:
    """One camera's tiles per frame size (computed once per size)."""

    def __init__(self, setting: RegionSetting, zones: Sequence[ZoneBase], input_size: tuple[int, int],
                 where: str = "camera") -> None:
        self.setting = setting
        self.zones = tuple(zones)
        self.input_size = input_size
        self.where = where
        self._plans: dict[tuple[int, int], tuple[Tile, ...]] = {}

    @classmethod
    def for_camera(cls, camera: Camera, input_size: tuple[int, int]) -> RegionPlanner:
        return cls(camera.detector.regions, camera.zones, input_size, f"camera {camera.id!r}")

    def tiles(self, frame_size: tuple[int, int]) -> tuple[Tile, ...]:
        plan = self._plans.get(frame_size)
        if plan is None:
            plan = self._plans[frame_size] = plan_tiles(self.setting, self.zones, frame_size, self.input_size,
                                                        self.where)
            if plan:
                log.info("%s: detector.regions %s: %d tile(s) at native resolution on %dx%d frames "
                         "(whole frame shrunk %.1fx): %s", self.where, _describe(self.setting), len(plan),
                         *frame_size, shrink_factor(frame_size, self.input_size),
                         ", ".join(f"[{t.x1},{t.y1},{t.x2},{t.y2}]" for t in plan))
        return plan


def _describe(setting: RegionSetting) -> str:
    return setting if isinstance(setting, str) else f"{len(setting)} crop box(es)"


def cut_by_edge(xyxy: npt.NDArray[np.float32], tile: Tile, frame_size: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """Boxes (tile pixels) touching one of the tile's inner edges: the object goes on past it."""
    w, h = tile.size
    fw, fh = frame_size
    cut = np.zeros(len(xyxy), bool)
    if tile.x1 > 0:
        cut |= xyxy[:, 0] <= EDGE_PX
    if tile.y1 > 0:
        cut |= xyxy[:, 1] <= EDGE_PX
    if tile.x2 < fw:
        cut |= xyxy[:, 2] >= w - EDGE_PX
    if tile.y2 < fh:
        cut |= xyxy[:, 3] >= h - EDGE_PX
    return cut


def merge_tiles(full: Detections, tiles: Sequence[Tile], tile_detections: Sequence[Detections],
                frame_size: tuple[int, int], iou_threshold: float = 0.45, class_agnostic: bool = False,
                max_det: int = 300) -> Detections:
    """The whole frame's detections and the tiles', in frame pixels, merged by NMS; a tile's box cut
    by an inner tile edge is dropped first (:func:`cut_by_edge`)."""
    if not tiles:
        return full
    xyxy, score, cls = [full.xyxy], [full.score], [full.class_id]
    source = [np.zeros(len(full), np.int32)]
    for i, (tile, dets) in enumerate(zip(tiles, tile_detections, strict=True), start=1):
        if len(dets) == 0:
            continue
        keep = ~cut_by_edge(dets.xyxy, tile, frame_size)
        xyxy.append(dets.xyxy[keep] + np.asarray([tile.x1, tile.y1, tile.x1, tile.y1], np.float32))
        score.append(dets.score[keep])
        cls.append(dets.class_id[keep])
        source.append(np.full(int(keep.sum()), i, np.int32))
    all_xyxy, all_score, all_cls = np.concatenate(xyxy), np.concatenate(score), np.concatenate(cls)
    if len(all_score) == len(full):
        return full
    order = nms(all_xyxy, all_score, all_cls, iou_threshold, class_agnostic, max_det)
    order = order[~nested(all_xyxy[order], all_cls[order], np.concatenate(source)[order], class_agnostic)]
    return Detections(all_xyxy[order], all_score[order], all_cls[order])


def nested(xyxy: npt.NDArray[np.float32], cls: npt.NDArray[np.int32], source: npt.NDArray[np.int32],
           class_agnostic: bool = False) -> npt.NDArray[np.bool_]:
    """For boxes best first: those at least :data:`CONTAINED` inside (or around) a better box of their
    class, one of the two from the whole frame (``source`` 0), the other from a tile."""
    lt = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    rb = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(xyxy[:, 2:] - xyxy[:, :2], axis=1)
    smaller = np.minimum(area[:, None], area[None, :])
    overlap = inter / np.maximum(smaller, 1e-6) >= CONTAINED
    whole = source == 0
    related = whole[:, None] != whole[None, :]
    if not class_agnostic:
        related &= cls[:, None] == cls[None, :]
    same = overlap & related
    dropped = np.zeros(len(xyxy), bool)
    for j in range(1, len(xyxy)):  # greedy, best first: only a box still kept drops another
        dropped[j] = bool((same[j, :j] & ~dropped[:j]).any())
    return dropped


def detect_with_regions(detector: object, images: Sequence[npt.NDArray[np.uint8]],
                        plans: Sequence[Sequence[Tile]]) -> list[Detections]:
    """One ``detector.detect`` call over every image and its tiles (``plans[i]`` for ``images[i]``);
    one merged :class:`Detections` per image, in its pixels."""
    if len(plans) != len(images):
        raise ModelError(f"detect_with_regions: {len(images)} images but {len(plans)} tile plans")
    batch: list[npt.NDArray[np.uint8]] = []
    for image, tiles in zip(images, plans, strict=True):
        batch.append(image)
        batch.extend(tile.crop(image) for tile in tiles)
    found: list[Detections] = detector.detect(batch)  # type: ignore[attr-defined]
    if len(found) != len(batch):
        raise ModelError(f"detector {getattr(detector, 'name', detector)!r} returned {len(found)} results "
                         f"for {len(batch)} images")
    iou = float(getattr(detector, "iou_threshold", 0.45))
    agnostic = bool(getattr(detector, "class_agnostic", False))
    max_det = int(getattr(detector, "max_det", 300))
    out, at = [], 0
    for image, tiles in zip(images, plans, strict=True):
        n = len(tiles)
        size = (image.shape[1], image.shape[0])
        out.append(merge_tiles(found[at], tiles, found[at + 1:at + 1 + n], size, iou, agnostic, max_det))
        at += 1 + n
    return out


class RegionDetector:
    """A detector that also looks at one camera's tiles (for replay and evaluation, one camera at a
    time; the worker calls :func:`detect_with_regions` over its whole batch instead)."""

    def __init__(self, inner: object, planner: RegionPlanner) -> None:
        self.inner = inner
        self.planner = planner
        self.name = str(getattr(inner, "name", "detector"))
        self.input_size = planner.input_size

    def warmup(self) -> None:
        self.inner.warmup()  # type: ignore[attr-defined]

    def detect(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[Detections]:
        plans = [self.planner.tiles((img.shape[1], img.shape[0])) for img in images]
        return detect_with_regions(self.inner, images, plans)


def with_regions(detector: object, camera: Camera) -> object:
    """``detector`` looking closer where ``camera.detector.regions`` says (itself when ``off``, or when
    it does not say its input size)."""
    size = getattr(detector, "input_size", None)
    if camera.detector.regions in ("off", ()) or size is None:
        return detector
    return RegionDetector(detector, RegionPlanner.for_camera(camera, (int(size[0]), int(size[1]))))


def regions_setting(choice: DetectorChoice) -> object:
    """The setting as plain JSON (for cache keys and manifests)."""
    regions = choice.regions
    return regions if isinstance(regions, str) else [list(c.box) for c in regions]
