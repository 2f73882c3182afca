"""Street stalls, table-driven with a scripted detector and a fake clock.

Zone: the pavement, the lower half of a 640x360 view. Limit 20 s, linger 10 s, occlusion grace
8 s, close grace 5 s, cooldown 20 s, analysed at 2 fps. A stall is an umbrella over a table at
x 300-420 with its vendor beside it.
"""

from __future__ import annotations

import pytest

from core.fakes import ScriptedObject as Obj

ZONE = {"id": "pavement", "type": "no_vending", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
        "limit_s": 20, "linger_s": 10, "occlusion_grace_s": 8, "close_grace_s": 5, "cooldown_s": 20,
        "update_interval_s": 5}
UMBRELLA = (300.0, 150.0, 420.0, 250.0)
TABLE = (310.0, 240.0, 410.0, 300.0)
VENDOR = (425.0, 200.0, 460.0, 310.0)


def umbrella(**kw) -> Obj:
    return Obj("umbrella", UMBRELLA, **kw)


def table(**kw) -> Obj:
    return Obj("dining table", TABLE, **kw)


def vendor(**kw) -> Obj:
    return Obj("person", VENDOR, **kw)


def walkers(n: int, every_s: float, speed: float = 60.0) -> list[Obj]:
    """People walking along the pavement, alternately left-to-right and right-to-left."""
    out = []
    for i in range(n):
        right = i % 2 == 0
        x = -40.0 if right else 650.0
        y2 = 290.0 + 12 * (i % 4)
        out.append(Obj("person", (x, y2 - 100, x + 35, y2), start=i * every_s,
                       velocity=(speed if right else -speed, 0.0)))
    return out


def queue(n: int) -> list[Obj]:
    """A bus-stop queue: people standing still in a line for the whole scene."""
    return [Obj("person", (100.0 + 40 * i, 200.0, 135.0 + 40 * i, 305.0), jitter=3.0) for i in range(n)]


def parked_cars() -> list[Obj]:
    return [Obj("car", (20.0 + 160 * i, 250.0, 150.0 + 160 * i, 330.0)) for i in range(3)]


missed = tuple((t + 1.4, t + 1.6) for t in range(0, 600, 3))  # frames 1.5, 4.5, 7.5, ... missed

# name, objects, duration_s, zone overrides, expected opened pts
CASES = [
    ("stall objects fire at the limit", [umbrella(), table()], 40, {}, [20.0]),
    ("not before the limit", [umbrella(), table()], 19.5, {}, []),
    ("occlusion gap by passers-by", [umbrella(hidden=((5.0, 10.0),)), table(hidden=((5.0, 10.0),)),
                                     *walkers(6, 2.0)], 40, {}, [20.0]),
    ("missed detections", [umbrella(hidden=missed), table(hidden=missed)], 40, {}, [20.0]),
    ("id swap after a long gap keeps the clock", [umbrella(hidden=((6.0, 11.0),))], 40, {}, [20.0]),
    ("lighting change: dim scores and wobble", [umbrella(dim=((5.0, 30.0, 0.32),), jitter=5.0), table()],
     40, {}, [20.0]),
    ("a crowd walking through", walkers(40, 1.0), 60, {}, []),
    ("people strolling with umbrellas", [o for i in range(6) for o in (
        Obj("umbrella", (-80.0, 170.0, -20.0, 230.0), start=8.0 * i, velocity=(20.0, 0.0)),
        Obj("person", (-70.0, 200.0, -35.0, 300.0), start=8.0 * i, velocity=(20.0, 0.0)))], 90, {}, []),
    ("a bus-stop queue", queue(6), 120, {}, []),
    ("parked cars alone", parked_cars(), 120, {}, []),
    ("a parked motorcycle alone (weak evidence)", [Obj("motorcycle", (300.0, 230.0, 380.0, 300.0))], 120, {}, []),
    ("a tricycle cart with its vendor lingering",
     [Obj("motorcycle", (300.0, 230.0, 380.0, 300.0)), vendor()], 60, {}, [30.0]),
    ("cyclists riding through", [Obj("bicycle", (-60.0, 240.0, 0.0, 300.0), start=3.0 * i, velocity=(90.0, 0.0))
                                 for i in range(15)], 60, {}, []),
    ("outside the zone", [Obj("umbrella", (300.0, 20.0, 420.0, 120.0))], 60, {}, []),
    ("stall classes are configurable", [umbrella()], 60, {"stall_classes": ["dining table"],
                                                          "weak_classes": []}, []),
    ("the threshold is configurable", [umbrella()], 60, {"evidence_threshold": 1.5}, []),
    ("with a vendor it passes a higher threshold", [umbrella(), vendor()], 60, {"evidence_threshold": 1.5},
     [30.0]),
]


@pytest.mark.parametrize(("name", "objects", "duration", "overrides", "opened"), CASES,
                         ids=[c[0] for c in CASES])
def test_stall_table(run_scene, name, objects, duration, overrides, opened) -> None:
    run = run_scene([{**ZONE, **overrides}], objects, duration)
    assert run.opened_pts == opened
    assert all(e.type == "street_stall" for e in run.events)
    assert not run.of("closed")


def test_evidence_says_which_signals_fired(run_scene) -> None:
    run = run_scene([ZONE], [umbrella(), table(), vendor()], 25)
    (ev,) = run.of("opened")
    assert ev.evidence.signals == {"lingering_person": 0.5, "stall_object": 1.0}
    assert sorted(b.label for b in ev.evidence.boxes) == ["dining table", "person", "umbrella"]
    assert ev.evidence.durations["evidence_s"] == pytest.approx(20.0)
    assert ev.location == pytest.approx((360 / 640, 250 / 360), abs=1e-3)  # the umbrella's ground point
    assert ev.zone_id == "pavement" and ev.type == "street_stall"


def test_vendor_arriving_later_is_a_material_update(run_scene) -> None:
    run = run_scene([ZONE], [umbrella(), vendor(start=15.0)], 40)
    assert [(e.event, e.stream_pts) for e in run.events] == [("opened", 20.0), ("updated", 25.0)]
    assert "lingering_person" in run.events[1].evidence.signals
    assert run.events[1].seq == 2 and run.events[1].incident_id == run.events[0].incident_id


def test_close_after_grace_then_cooldown(run_scene) -> None:
    # occlusion grace 2 s, close grace 5 s, cooldown 30 s. The stall packs up at 30 (last seen 29.5),
    # is forgotten at 32, the incident closes at 36.5 and the place cools down until 66.5.
    zone = {**ZONE, "occlusion_grace_s": 2, "cooldown_s": 30}
    # set up again at 40: evidence for 20 s at 60, inside the cooldown; gone at 62 -> nothing opens
    run = run_scene([zone], [umbrella(end=30.0), umbrella(start=40.0, end=62.0)], 90)
    assert [(e.event, e.stream_pts) for e in run.events] == [("opened", 20.0), ("closed", 36.5)]
    # set up again at 50: evidence for 20 s at 70, after the cooldown -> a new incident
    run = run_scene([zone], [umbrella(end=30.0), umbrella(start=50.0)], 90)
    assert [(e.event, e.stream_pts) for e in run.events] == [("opened", 20.0), ("closed", 36.5),
                                                             ("opened", 70.0)]
    assert run.events[2].incident_id != run.events[0].incident_id


def test_one_incident_for_a_whole_stall(run_scene) -> None:
    # umbrella, table, chair and vendor are one stall; five minutes with passers-by: one incident
    objects = [umbrella(hidden=missed), table(), Obj("chair", (250.0, 250.0, 290.0, 305.0)), vendor(jitter=8.0),
               *walkers(50, 6.0)]
    run = run_scene([ZONE], objects, 300)
    assert len(run.of("opened")) == 1
    assert len({e.incident_id for e in run.events}) == 1
    assert not run.of("closed")


def test_two_stalls_far_apart_are_two_incidents(run_scene) -> None:
    far = Obj("umbrella", (20.0, 150.0, 120.0, 250.0), start=4.0)
    run = run_scene([ZONE], [umbrella(), far], 40)
    assert run.opened_pts == [20.0, 24.0]
    assert len({e.incident_id for e in run.events}) == 2


@pytest.mark.parametrize(("start", "opened"), [
    ("2026-03-02T09:00:00+08:00", [20.0]),
    ("2026-03-02T22:00:00+08:00", []),   # vending is allowed after 21:00
    ("2026-03-02T06:59:30+08:00", [50.0]),  # evidence counts from 07:00 (pts 30)
])
def test_schedule(run_scene, start, opened) -> None:
    zone = {**ZONE, "schedule": {"windows": [{"start": "07:00", "end": "21:00"}]}}
    run = run_scene([zone], [umbrella()], 60, start=start)
    assert run.opened_pts == opened


class Region:
    def __init__(self, xyxy, since):
        self.xyxy = xyxy
        self.static_since_pts = since


def test_static_occupancy_counts_with_a_vendor_not_alone(run_scene) -> None:
    """Goods laid on the ground (no COCO class) show up only as a static background region."""
    from camera_config.schema import NoVendingZone
    from core.fakes import FakeClock, Scene
    from rules.stall import StallRule

    goods = (150.0, 260.0, 260.0, 310.0)
    vendor_near = Obj("person", (265.0, 200.0, 300.0, 312.0))
    for objects, opened in (([], []), ([vendor_near], [30.0])):
        rule = StallRule(NoVendingZone.model_validate(ZONE), (640, 360))
        clock = FakeClock(start=1_772_413_200.0, fps=2.0, size=(640, 360))
        scene = Scene(objects, size=(640, 360))
        fired = []
        for frame in clock.frames(40):
            rule.static_regions = [Region(goods, 0.0)]
            found = rule.update(frame, [], scene.detections(frame.pts))
            if found and not fired:
                fired.append(frame.pts)
                assert found[0].evidence.signals == {"lingering_person": 0.5, "static_occupancy": 0.5}
        assert fired == opened
