"""Event-level matching with hand-made incident lists: early, late, duplicate, wrong zone, wrong type,
wrong place."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.events import EventType, Evidence, EvidenceBox, IncidentEvent
from evaluation.labels import Expected, LabelError, Quiet, Where
from evaluation.matching import OVERALL, Observed, Score, incidents_from_events, match_clip, place_of, score


def exp(type_: str = "illegal_parking", zone: str = "kerb", start: tuple[float, float | None] = (10, 30),
        end: tuple[float, float | None] | None = None) -> Expected:
    return Expected.model_validate({"type": type_, "zone": zone, "start": list(start),
                                    "end": list(end) if end else None})


def inc(opened: float, type_: str = "illegal_parking", zone: str = "kerb", closed: float | None = None,
        iid: str | None = None) -> Observed:
    return Observed(iid or f"i{opened}-{zone}-{type_}", type_, zone, opened, closed)


# (incidents, labels) -> (TP, [FP reasons], FN)
CASES = [
    pytest.param([inc(12)], [exp()], 1, [], 0, id="on-time"),
    pytest.param([inc(10)], [exp()], 1, [], 0, id="at-window-start-inclusive"),
    pytest.param([inc(30)], [exp()], 1, [], 0, id="at-window-end-inclusive"),
    pytest.param([inc(5)], [exp()], 0, ["early"], 1, id="early"),
    pytest.param([inc(31)], [exp()], 0, ["late"], 1, id="late"),
    pytest.param([inc(12), inc(20)], [exp()], 1, ["duplicate"], 0, id="duplicate"),
    pytest.param([inc(12, zone="other")], [exp()], 0, ["wrong_zone"], 1, id="wrong-zone"),
    pytest.param([inc(12, type_="street_stall")], [exp()], 0, ["wrong_type"], 1, id="wrong-type"),
    pytest.param([inc(12, type_="obstruction", zone="road")], [exp()], 0, ["unexpected"], 1,
                 id="unrelated"),
    pytest.param([], [exp()], 0, [], 1, id="missed"),
    pytest.param([inc(3)], [], 0, ["unexpected"], 0, id="nothing-expected"),
    pytest.param([inc(12), inc(45)], [exp(), exp(start=(40, None))], 2, [], 0, id="two-problems-open-window"),
    pytest.param([inc(45), inc(12)], [exp(start=(40, None)), exp()], 2, [], 0, id="order-independent"),
    pytest.param([inc(12, closed=20)], [exp(end=(25, None))], 0, ["bad_end"], 1, id="closed-too-soon"),
    pytest.param([inc(12)], [exp(end=(25, None))], 1, [], 0, id="still-open-accepted"),
    pytest.param([inc(12)], [exp(end=(25, 40))], 0, ["bad_end"], 1, id="still-open-but-must-close"),
    pytest.param([inc(12, closed=30)], [exp(end=(25, 40))], 1, [], 0, id="closed-in-window"),
]


@pytest.mark.parametrize(("incidents", "labels", "tp", "fp_reasons", "fn"), CASES)
def test_match_table(incidents: list[Observed], labels: list[Expected], tp: int, fp_reasons: list[str],
                     fn: int) -> None:
    res = match_clip("clip", incidents, labels)
    assert len(res.matches) == tp
    assert sorted(f.reason for f in res.false_positives) == sorted(fp_reasons)
    assert len(res.missed) == fn


def test_overlapping_windows_first_incident_takes_earliest_label() -> None:
    a, b = exp(start=(10, 50)), exp(start=(20, 50))
    res = match_clip("clip", [inc(25), inc(15)], [b, a])
    assert [(m.incident.opened, m.label.start.lo) for m in res.matches] == [(15, 10), (25, 20)]


def test_delay_is_from_label_start() -> None:
    res = match_clip("clip", [inc(17.5)], [exp(start=(10, 30))])
    assert res.matches[0].delay_s == pytest.approx(7.5)


def test_quiet_spans_for_non_exhaustive_labels() -> None:
    quiet = [Quiet.model_validate({"from": 0, "to": 20, "types": ["street_stall"]})]
    incidents = [inc(5, type_="street_stall", zone="pav"),   # in the quiet span: false positive
                 inc(25, type_="street_stall", zone="pav"),  # after it: unlabelled, not scored
                 inc(8)]                                      # parking: not covered by the span
    res = match_clip("clip", incidents, [], quiet, exhaustive=False)
    assert [(f.incident.opened, f.reason) for f in res.false_positives] == [(5, "quiet")]
    assert sorted(u.opened for u in res.unlabelled) == [8, 25]


def test_duplicates_count_even_when_not_exhaustive() -> None:
    res = match_clip("clip", [inc(12), inc(13)], [exp()], exhaustive=False)
    assert len(res.matches) == 1
    assert [f.reason for f in res.false_positives] == ["duplicate"]


def test_scores_per_type_and_overall() -> None:
    r1 = match_clip("a", [inc(12), inc(14, type_="obstruction", zone="road")],
                    [exp(), exp("obstruction", "road", (0, 5))])
    r2 = match_clip("b", [inc(12)], [exp(), exp(zone="kerb2")])
    s = score([r1, r2])
    assert (s["illegal_parking"].tp, s["illegal_parking"].fp, s["illegal_parking"].fn) == (2, 0, 1)
    assert (s["obstruction"].tp, s["obstruction"].fp, s["obstruction"].fn) == (0, 1, 1)
    o = s[OVERALL]
    assert (o.tp, o.fp, o.fn) == (2, 1, 2)
    assert o.precision == pytest.approx(2 / 3)
    assert o.recall == pytest.approx(0.5)
    assert o.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert sorted(o.delays) == [2.0, 2.0]


def test_empty_score_conventions() -> None:
    s = Score()
    assert (s.precision, s.recall) == (1.0, 1.0)
    assert Score(fp=2).precision == 0.0
    assert Score(fn=1).f1 == 0.0


def _event(iid: str, seq: int, event: EventType, pts: float, zone: str = "kerb") -> IncidentEvent:
    return IncidentEvent(incident_id=iid, seq=seq, event=event, type="illegal_parking",
                         camera_id="cam", grid_cell="G1", zone_id=zone, started_at=0.0, event_at=1000 + pts,
                         stream_pts=pts)


def test_events_fold_into_incidents() -> None:
    events = [_event("inc-aaaaaaaa", 1, "opened", 12.0), _event("inc-bbbbbbbb", 1, "opened", 5.0, "k2"),
              _event("inc-aaaaaaaa", 2, "updated", 20.0), _event("inc-aaaaaaaa", 3, "closed", 31.0)]
    got = incidents_from_events(events)
    assert [(o.incident_id, o.zone, o.opened, o.closed) for o in got] == [
        ("inc-bbbbbbbb", "k2", 5.0, None), ("inc-aaaaaaaa", "kerb", 12.0, 31.0)]


# --- place: `where` boxes --------------------------------------------------------------------------

LEFT = (0.10, 0.20, 0.30, 0.50)   # two cars side by side in one zone, normalised boxes
RIGHT = (0.60, 0.20, 0.80, 0.50)


def placed(box: tuple[float, float, float, float] | None, start: tuple[float, float | None] = (10, 30),
           units: str = "norm") -> Expected:
    where = None if box is None else {"box": list(box), "units": units}
    return Expected.model_validate({"type": "illegal_parking", "zone": "kerb", "start": list(start),
                                    "where": where})


def at(opened: float, place: tuple[float, float] | None, iid: str | None = None) -> Observed:
    return Observed(iid or f"i{opened}-{place}", "illegal_parking", "kerb", opened, None, place)


def test_right_time_and_zone_but_wrong_place_is_one_fp_and_one_fn() -> None:
    res = match_clip("clip", [at(12, (0.70, 0.48))], [placed(LEFT)])
    assert res.matches == ()
    assert [f.reason for f in res.false_positives] == ["wrong_place"]
    assert res.missed == (placed(LEFT),)
    s = score([res])["illegal_parking"]
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)
    # how far off it was: from (0.70, 0.48) to the box's right edge at x 0.30
    assert res.false_positives[0].off_by == pytest.approx(0.40)


def test_right_place_matches_with_its_place_error() -> None:
    res = match_clip("clip", [at(12, (0.23, 0.46))], [placed(LEFT)])
    assert len(res.matches) == 1 and res.false_positives == () and res.missed == ()
    # from (0.23, 0.46) to the box's ground point, the bottom centre (0.20, 0.50)
    assert res.matches[0].place_error == pytest.approx(0.05)
    assert score([res])["illegal_parking"].place_errors == [pytest.approx(0.05)]


PLACE_CASES = [
    pytest.param([at(12, (0.10, 0.50))], [placed(LEFT)], 1, [], 0, id="box-corner-inclusive"),
    pytest.param([at(12, (0.31, 0.40))], [placed(LEFT)], 0, ["wrong_place"], 1, id="just-outside"),
    pytest.param([at(12, None)], [placed(LEFT)], 0, ["wrong_place"], 1, id="incident-without-place"),
    pytest.param([at(12, (0.95, 0.95))], [placed(None)], 1, [], 0, id="label-without-where-any-place"),
    pytest.param([at(12, None)], [placed(None)], 1, [], 0, id="neither-has-a-place"),
    pytest.param([at(12, (0.7, 0.4)), at(13, (0.2, 0.4))], [placed(LEFT), placed(RIGHT)], 2, [], 0,
                 id="each-car-its-own-box"),
    pytest.param([at(12, (0.2, 0.4)), at(13, (0.22, 0.41))], [placed(LEFT), placed(RIGHT)], 1, ["duplicate"], 1,
                 id="two-incidents-one-car-other-car-missed"),
    pytest.param([at(5, (0.2, 0.4))], [placed(LEFT)], 0, ["early"], 1, id="right-place-too-early"),
    pytest.param([at(12, (0.7, 0.4))], [placed(LEFT), placed(RIGHT, start=(20, 30))], 0, ["wrong_place"], 2,
                 id="other-car-not-due-yet"),
]


@pytest.mark.parametrize(("incidents", "labels", "tp", "fp_reasons", "fn"), PLACE_CASES)
def test_place_table(incidents: list[Observed], labels: list[Expected], tp: int, fp_reasons: list[str],
                     fn: int) -> None:
    res = match_clip("clip", incidents, labels)
    assert len(res.matches) == tp
    assert sorted(f.reason for f in res.false_positives) == sorted(fp_reasons)
    assert len(res.missed) == fn


def test_each_car_its_own_box_whatever_the_order() -> None:
    incidents = [at(12, (0.7, 0.4), "b"), at(12, (0.2, 0.4), "a")]
    for labels in ([placed(LEFT), placed(RIGHT)], [placed(RIGHT), placed(LEFT)]):
        res = match_clip("clip", incidents, labels)
        assert {(m.incident.incident_id, m.label.where.box if m.label.where else None) for m in res.matches} == {
            ("a", LEFT), ("b", RIGHT)}


def test_wrong_place_is_not_scored_when_labels_are_not_exhaustive() -> None:
    res = match_clip("clip", [at(12, (0.7, 0.4))], [placed(LEFT)], exhaustive=False)
    assert res.false_positives == () and [u.place for u in res.unlabelled] == [(0.7, 0.4)]
    assert len(res.missed) == 1


def test_place_error_is_measured_to_the_labelled_point_when_given() -> None:
    label = Expected.model_validate({"type": "illegal_parking", "zone": "kerb", "start": [10, 30],
                                     "where": {"box": list(LEFT), "units": "norm", "point": [0.2, 0.35]}})
    res = match_clip("clip", [at(12, (0.23, 0.39))], [label])
    assert res.matches[0].place_error == pytest.approx(0.05)
    px = Where.model_validate({"box": [64, 96, 192, 240], "units": "px", "point": [128, 200]})
    assert px.normalised((640, 480)).ground == pytest.approx((0.2, 200 / 480))


def test_pixel_boxes_must_be_normalised_before_matching() -> None:
    px = placed((64, 96, 192, 240), units="px")
    with pytest.raises(LabelError, match="pixels"):
        match_clip("clip", [at(12, (0.2, 0.4))], [px])
    norm = px.normalised((640, 480))
    assert norm.where is not None and norm.where.units == "norm"
    assert norm.where.box == pytest.approx((0.1, 0.2, 0.3, 0.5))
    assert len(match_clip("clip", [at(12, (0.2, 0.4))], [norm]).matches) == 1


@pytest.mark.parametrize(("where", "needle"), [
    ({"box": [0.1, 0.2, 1.3, 0.5], "units": "norm"}, "goes past 1"),
    ({"box": [0.3, 0.2, 0.1, 0.5], "units": "norm"}, "x1 < x2"),
    ({"box": [10, 50, 20, 40], "units": "px"}, "y1 < y2"),
    ({"box": [-1, 0, 20, 40], "units": "px"}, "negative"),
    ({"box": [0.1, 0.2, 0.3, 0.5]}, "units"),
    ({"box": [0.1, 0.2, 0.3], "units": "norm"}, "box"),
    ({"box": [0.1, 0.2, 0.3, 0.5], "units": "norm", "point": [0.5, 0.4]}, "outside box"),
])
def test_where_is_checked(where: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        Where.model_validate(where)


def test_place_of_an_event_location_first_then_evidence_box() -> None:
    base = _event("inc-aaaaaaaa", 1, "opened", 12.0)
    assert place_of(base.model_copy(update={"location": (0.25, 0.75)})) == (0.25, 0.75)
    boxed = base.model_copy(update={"evidence": Evidence(
        boxes=(EvidenceBox(label="car", score=0.9, xyxy=(100, 50, 300, 240)),), frame_size=(400, 300))})
    assert place_of(boxed) == (0.5, 0.8)
    assert place_of(base) is None
    folded = incidents_from_events([base.model_copy(update={"location": (0.25, 0.75)})])
    assert folded[0].place == (0.25, 0.75)
