"""Checks that a zone polygon is a simple outline with an inside: pure functions, no I/O.

A polygon whose edges cross (a "bow tie") has no well-defined inside, and one whose points lie on a
line encloses nothing, so its zone can never fire. Both are config mistakes, refused at load time.
The crossing test is the classic orientation test, vectorised over every pair of edges with numpy
(about 5 ms for a 1,000-point outline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

MIN_POLYGON_AREA = 1e-6
"""Least area of a zone, as a fraction of the frame: about 2 px at 1920x1080. Smaller is no area at all
(points on a line, or a sliver no box's ground point can fall into)."""
Points: TypeAlias = npt.NDArray[np.float64]
_EPS = 1e-12
"""Cross products below this are collinear: coordinates are normalised to 0..1, so float noise is ~1e-16."""


def polygon_area(points: Sequence[tuple[float, float]]) -> float:
    """Unsigned area by the shoelace formula (a crossing outline's lobes may cancel: check crossings first)."""
    xy = np.asarray(points, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _cross(o: Points, a: Points, b: Points) -> Points:
    """z of (a - o) x (b - o), element-wise; > 0 counter-clockwise, < 0 clockwise, ~0 collinear."""
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


def _within(p: Points, a: Points, b: Points) -> npt.NDArray[np.bool_]:
    """``p`` lies in the bounding box of segment ``a``-``b`` (for points already known collinear with it)."""
    lo, hi = np.minimum(a, b) - _EPS, np.maximum(a, b) + _EPS
    return np.all((p >= lo) & (p <= hi), axis=-1)


def edge_contacts(points: Sequence[tuple[float, float]]) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """The first pair of edges ``(i, j)``, ``i < j``, that cross properly, and the first that touch
    otherwise (meet at a point of one of them, overlap, or fold back); None where there is none.

    Edge ``i`` runs from point ``i`` to point ``i + 1`` (the last one back to point 0). Neighbouring
    edges share their common point; they count as touching only when they fold back over each other.
    """
    xy = np.asarray(points, dtype=np.float64)
    n = len(xy)
    a, b = xy, np.roll(xy, -1, axis=0)
    i, j = np.triu_indices(n, k=1)
    a1, b1, a2, b2 = a[i], b[i], a[j], b[j]
    d1, d2 = _cross(a2, b2, a1), _cross(a2, b2, b1)
    d3, d4 = _cross(a1, b1, a2), _cross(a1, b1, b2)
    proper = (((d1 > _EPS) & (d2 < -_EPS)) | ((d1 < -_EPS) & (d2 > _EPS))) & \
             (((d3 > _EPS) & (d4 < -_EPS)) | ((d3 < -_EPS) & (d4 > _EPS)))
    touch = ((np.abs(d1) <= _EPS) & _within(a1, a2, b2)) | ((np.abs(d2) <= _EPS) & _within(b1, a2, b2)) | \
            ((np.abs(d3) <= _EPS) & _within(a2, a1, b1)) | ((np.abs(d4) <= _EPS) & _within(b2, a1, b1))
    neighbours = (j == i + 1) | ((i == 0) & (j == n - 1))
    # neighbours always touch at their shared point; they fold back when collinear and pointing back
    fold = neighbours & (np.abs(d1) <= _EPS) & (np.abs(d2) <= _EPS) & \
        (np.einsum("ij,ij->i", b1 - a1, b2 - a2) < 0)

    def first(mask: npt.NDArray[np.bool_]) -> tuple[int, int] | None:
        hits = np.flatnonzero(mask)
        return (int(i[hits[0]]), int(j[hits[0]])) if hits.size else None

    return first(proper), first((touch & ~neighbours) | fold)


def polygon_problem(points: Sequence[tuple[float, float]]) -> str | None:
    """Why ``points`` is not a usable zone outline, in one sentence; None when it is one.

    A point repeated right after itself (or the first point repeated at the end, closing the outline
    as GeoJSON does) is one point. Edges are numbered over the points left."""
    points = [p for k, p in enumerate(points) if p != points[k - 1]] or list(points[:1])
    n = len(points)
    if n < 3:
        return f"polygon has no area: only {n} distinct point(s)"

    def edges(pair: tuple[int, int]) -> str:
        e1, e2 = pair
        return f"edge {e1} (points {e1}-{(e1 + 1) % n}) and edge {e2} (points {e2}-{(e2 + 1) % n})"

    crossing, contact = edge_contacts(points)
    if crossing is not None:
        return (f"polygon crosses itself: {edges(crossing)} cross; list the points in order around the "
                f"zone's outline")
    area = polygon_area(points)
    if area < MIN_POLYGON_AREA:
        return (f"polygon has no area ({area:.2g} of the frame, less than {MIN_POLYGON_AREA:g}): its points "
                f"lie on a line or almost, so the zone could never fire")
    if contact is not None:
        return f"polygon touches itself: {edges(contact)} meet or overlap; an outline must not meet itself"
    return None
