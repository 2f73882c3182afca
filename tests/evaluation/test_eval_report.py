"""The reports: the README's per-rule table, the per-clip lines and the JSON carry places and place errors."""

from __future__ import annotations

from typing import get_args

import pytest

from core.events import IncidentType
from evaluation import report
from evaluation.labels import Expected
from evaluation.matching import ClipResult, Observed, match_clip, score


def label(box: tuple[float, float, float, float]) -> Expected:
    return Expected.model_validate({"type": "illegal_parking", "zone": "kerb", "start": [0, 30],
                                    "where": {"box": list(box), "units": "norm"}, "note": "a car"})


@pytest.fixture()
def results() -> list[ClipResult]:
    left, right = label((0.1, 0.2, 0.3, 0.5)), label((0.6, 0.2, 0.8, 0.5))
    return [match_clip("kerb", [Observed("a", "illegal_parking", "kerb", 9.0, None, (0.2, 0.46)),
                                Observed("b", "illegal_parking", "kerb", 9.5, None, (0.45, 0.46))],
                       [left, right])]


def test_rule_table_has_every_rule_and_the_figures(results: list[ClipResult]) -> None:
    table = report.rule_table(score(results)).splitlines()
    assert table[0].startswith("| rule | incident type | TP | FP | FN |")
    body = {row.split(" | ")[1]: row for row in table[2:]}
    assert set(body) == {*get_args(IncidentType), "overall"}
    # one match (place error 0.04 from (0.2, 0.46) to the ground point (0.2, 0.5)), one wrong place,
    # and the right-hand car missed
    assert body["illegal_parking"].endswith("| 1 | 1 | 1 | 0.50 | 0.50 | 9.0 | 0.040 |")
    assert body["street_stall"].endswith("| 0 | 0 | 0 | - | - | - | - |")  # nothing labelled, nothing fired


def test_clip_lines_and_json_carry_places(results: list[ClipResult]) -> None:
    lines = report.clip_lines(results)
    assert "place=(0.200, 0.460) place_error=0.040" in lines[1]
    assert "(wrong_place, 0.150 outside the label's box)" in lines[2]
    assert "where=[0.600, 0.200, 0.800, 0.500]" in lines[3]
    data = report.eval_json(score(results), results)
    clip = data["clips"][0]
    assert clip["matches"][0]["place"] == [0.2, 0.46] and clip["matches"][0]["place_error"] == 0.04
    assert clip["false_positives"][0]["reason"] == "wrong_place" and clip["false_positives"][0]["off_by"] == 0.15
    assert data["scores"]["illegal_parking"]["median_place_error"] == 0.04
