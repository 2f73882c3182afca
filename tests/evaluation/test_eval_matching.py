"""Event-level matching with hand-made incident lists: early, late, duplicate, wrong zone, wrong type."""

from __future__ import annotations

import pytest

from core.events import EventType, IncidentEvent
from evaluation.labels import Expected, Quiet
from evaluation.matching import OVERALL, Observed, Score, incidents_from_events, match_clip, score


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
