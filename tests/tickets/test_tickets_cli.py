"""``patrol tickets list|show|transition|overdue|dead-letters`` print JSON; refusals exit 2 with a clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camera_config.schema import TicketsConfig
from patrol.cli import main
from storage import repository as repo
from storage.db import open_database
from tickets.desk import apply_event


@pytest.fixture(autouse=True)
def _keep_logging():  # type: ignore[no-untyped-def]
    """main() points the root logger at this test's captured stderr; put the old handlers back."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def url(tmp_path: Path, make_incident_event) -> str:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    db = open_database(url)
    for i, zone in enumerate(("kerb", "crossing")):
        ev = make_incident_event(f"inc-cli-{i}", 1, zone_id=zone)
        apply_event(db, TicketsConfig(), ev, ev.topic())
    with db.transaction() as s:
        repo.add_dead_letter(s, "patrol/v1/incidents/x/y", b"{oops", "not JSON: Expecting value")
    db.dispose()
    return url


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_list_show_transition_overdue(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tickets", "list", "--db", url]) == 0
    listed = _json(capsys)
    assert isinstance(listed, list) and [t["state"] for t in listed] == ["accepted", "accepted"]
    tid = listed[-1]["id"]

    assert main(["tickets", "transition", str(tid), "dispatched", "--actor", "centre", "--reason", "routed",
                 "--db", url]) == 0
    shown = _json(capsys)
    assert isinstance(shown, dict) and shown["state"] == "dispatched"
    assert [(h["from"], h["to"], h["actor"]) for h in shown["history"]] == [
        (None, "accepted", "tickets"), ("accepted", "dispatched", "centre")]
    assert shown["incidents"][0]["evidence"][0]["kind"] == "snapshot"

    assert main(["tickets", "list", "--state", "dispatched", "--db", url]) == 0
    assert [t["id"] for t in _json(capsys)] == [tid]  # type: ignore[union-attr]

    assert main(["tickets", "overdue", "--db", url]) == 0  # the fixture's incidents are from 2023
    assert {t["state"] for t in _json(capsys)} == {"accepted", "dispatched"}  # type: ignore[union-attr]

    assert main(["tickets", "dead-letters", "--db", url]) == 0
    assert _json(capsys)[0]["reason"] == "not JSON: Expecting value"  # type: ignore[index]


def test_refused_transition_is_one_clear_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tickets", "transition", "1", "archived", "--actor", "x", "--reason", "y", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "cannot go from 'accepted' to 'archived'" in err and "Traceback" not in err
    assert main(["tickets", "show", "99", "--db", url]) == 2
    assert "no ticket 99" in capsys.readouterr().err
    assert main(["tickets", "show", "1", "--db", url]) == 0
    assert _json(capsys)["state"] == "accepted"  # type: ignore[index]
