"""Config holes of issue 14 item 7: each refused with one line naming the file, the field and the problem.

Self-intersecting and zero-area polygons, a key given twice, NaN and infinity, an oversized file, an
alias bomb, a recursive alias and runaway nesting.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from camera_config import load_config, parse_config
from camera_config.geometry import polygon_problem
from camera_config.yaml_safe import MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES
from core.errors import ConfigError

SITE = """\
site:
  name: holes
cameras:
  - id: cam-a
    url: clip.mp4
    grid_cell: G1
    zones:
      - id: z1
        type: no_parking
        polygon: {polygon}
        limit_s: {limit}
"""


def one_problem(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def site_file(tmp_path: Path, polygon: str = "[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]",
              limit: str = "60", text: str | None = None) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text if text is not None else SITE.format(polygon=polygon, limit=limit), encoding="utf-8")
    return path


@pytest.mark.parametrize(("polygon", "words"), [
    ("[[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]",  # a bow tie
     "polygon crosses itself: edge 0 (points 0-1) and edge 2 (points 2-3) cross"),
    ("[[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]", "polygon has no area"),  # three points on a line
    ("[[0.1, 0.1], [0.3, 0.3], [0.6, 0.6], [0.9, 0.9]]", "polygon has no area"),  # four on a line
    ("[[0.2, 0.2], [0.2, 0.2], [0.2, 0.2]]", "only 1 distinct point"),
    ("[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.5, 0.1]]",  # comes back onto its first edge
     "polygon touches itself: edge 0 (points 0-1) and edge 2 (points 2-3) meet"),
    ("[[0.1, 0.1], [0.9, 0.1], [0.5, 0.1], [0.5, 0.9]]", "polygon touches itself"),  # folds back along an edge
])
def test_invalid_polygon_is_one_line(tmp_path: Path, polygon: str, words: str) -> None:
    path = site_file(tmp_path, polygon=polygon)
    line = one_problem(path)
    assert line.startswith(f"{path}: camera 'cam-a': cameras[0].zones[0].polygon: "), line
    assert words in line, line


@pytest.mark.parametrize("polygon", [
    "[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]",
    "[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9], [0.1, 0.1]]",  # closed GeoJSON-style: first point again
    "[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.5, 0.3], [0.1, 0.9]]",  # concave is fine
    "[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]",
])
def test_simple_polygons_are_accepted(tmp_path: Path, polygon: str) -> None:
    assert load_config(site_file(tmp_path, polygon=polygon)).cameras[0].zones[0].id == "z1"


angles = st.lists(st.floats(0, 2 * math.pi, exclude_max=True), min_size=4, max_size=12, unique=True)


@settings(max_examples=200, deadline=None)
@given(angles, st.data())
def test_property_convex_is_simple_and_a_swap_makes_it_cross(thetas: list[float], data: st.DataObject) -> None:
    """Points on a circle in angle order are a simple outline; with 4 or more points that order (or its
    reverse) is the only simple one, so swapping two neighbours makes two edges cross or touch."""
    thetas = sorted(thetas)
    if min(b - a for a, b in zip(thetas, [*thetas[1:], thetas[0] + 2 * math.pi], strict=True)) < 1e-3:
        return  # points too close together to draw: not what this property is about
    pts = [(0.5 + 0.4 * math.cos(t), 0.5 + 0.4 * math.sin(t)) for t in thetas]
    assert polygon_problem(pts) is None
    n = len(pts)
    i = data.draw(st.integers(0, n - 1))
    j = (i + 1) % n
    pts[i], pts[j] = pts[j], pts[i]
    problem = polygon_problem(pts)
    assert problem is not None and ("crosses itself" in problem or "touches itself" in problem), problem


@pytest.mark.parametrize(("text", "where", "words"), [
    (SITE.format(polygon="[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]", limit="60") + "        limit_s: 90\n",
     "cameras[0].zones[0]: ", "duplicate key 'limit_s' at line 12 (first at line 11)"),
    ("site: {name: a, name: b}\ncameras: []\n", "site: ", "duplicate key 'name' at line 1 (first at line 1)"),
    ("site: {name: a}\nsite: {name: b}\ncameras: []\n", "", "duplicate key 'site' at line 2 (first at line 1)"),
])
def test_duplicate_key_is_refused_with_both_lines(tmp_path: Path, text: str, where: str, words: str) -> None:
    path = site_file(tmp_path, text=text)
    line = one_problem(path)
    assert line == f"{path}: {where}{words}: YAML would keep only the last one; remove one of them"


def test_merge_key_may_be_overridden(tmp_path: Path) -> None:
    text = """\
defaults: &zone {type: no_parking, limit_s: 60, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]}
site: {name: merge}
cameras:
  - id: cam-a
    url: clip.mp4
    grid_cell: G1
    zones:
      - <<: *zone
        id: z1
        limit_s: 90
"""
    raw = yaml.safe_load(text)
    del raw["defaults"]
    path = site_file(tmp_path, text=yaml.safe_dump(raw))
    assert load_config(path).cameras[0].zones[0].limit_s == 90
    with pytest.raises(ConfigError, match="unknown key 'defaults'"):  # the guard itself let it through
        load_config(site_file(tmp_path, text=text))


@pytest.mark.parametrize(("limit", "got"), [(".nan", ".nan"), (".inf", ".inf"), ("-.inf", "-.inf"), (".NaN", ".nan")])
def test_nan_and_infinity_are_not_finite_numbers(tmp_path: Path, limit: str, got: str) -> None:
    path = site_file(tmp_path, limit=limit)
    assert one_problem(path) == (f"{path}: camera 'cam-a': cameras[0].zones[0].limit_s: "
                                 f"not a finite number (got {got})")


def test_nan_in_a_point_and_a_rate(tmp_path: Path) -> None:
    path = site_file(tmp_path, polygon="[[0.1, .nan], [0.9, 0.1], [0.9, 0.9]]")
    assert one_problem(path).endswith("cameras[0].zones[0].polygon[0][1]: not a finite number (got .nan)")
    raw = yaml.safe_load(SITE.format(polygon="[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]", limit="60"))
    raw["cameras"][0]["analysis_fps"] = math.inf
    raw["tickets"] = {"deadlines_s": {"illegal_parking": math.nan}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.problems == [
        "<memory>: camera 'cam-a': cameras[0].analysis_fps: not a finite number (got .inf)",
        "<memory>: site: tickets.deadlines_s.illegal_parking: not a finite number (got .nan)"]


def test_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    base = SITE.format(polygon="[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]", limit="60")
    path = site_file(tmp_path, text=base + "#" + "x" * (12 * MAX_CONFIG_BYTES) + "\n")  # 12 MB of comment
    started = time.perf_counter()
    line = one_problem(path)
    assert time.perf_counter() - started < 1.0
    assert line == f"{path}: file is 12.0 MB, more than the 1 MB a site config may have"
    # just under the cap still loads
    path = site_file(tmp_path, text=base + "#" + "x" * (MAX_CONFIG_BYTES - len(base) - 10) + "\n")
    assert load_config(path).site.name == "holes"


def test_alias_bomb_is_refused_before_it_is_built(tmp_path: Path) -> None:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 items expanded
    path = site_file(tmp_path, text="\n".join(lines) + "\n")
    assert path.stat().st_size < 1_000
    started = time.perf_counter()
    line = one_problem(path)
    assert time.perf_counter() - started < 1.0
    assert line.startswith(f"{path}: l5: more than {MAX_NODES:,} YAML nodes with aliases expanded"), line


def test_recursive_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    line = one_problem(site_file(tmp_path, text="site: &s {name: a, again: *s}\n"))
    assert "site: an alias refers to the mapping or list it is in" in line
    deep = "site:\n" + "".join("  " * (k + 1) + f"k{k}:\n" for k in range(MAX_DEPTH + 5))
    deep += "  " * (MAX_DEPTH + 6) + "x\n"
    line = one_problem(site_file(tmp_path, text=deep))
    assert f"nested deeper than {MAX_DEPTH} levels" in line


def test_check_config_prints_the_one_line(tmp_path: Path) -> None:
    path = site_file(tmp_path, polygon="[[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]")
    proc = subprocess.run([sys.executable, "-m", "patrol", "check-config", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{path}: camera 'cam-a': cameras[0].zones[0].polygon: polygon crosses itself: edge 0 (points 0-1) and "
        f"edge 2 (points 2-3) cross; list the points in order around the zone's outline"]
