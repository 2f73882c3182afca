from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from review_kit import PASSWORD, incident
from street_run import run_pipeline, street_site

from evidence.store import EvidenceStore
from review.app import ReviewContext, create_app
from review.security import SessionCodec
from review.server import add_operator
from storage import repository as repo
from storage.db import Database, open_database


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once, with three incidents and two operators (argon2 is slow on purpose)."""
    path = tmp_path_factory.mktemp("review-db") / "patrol.db"
    database = open_database(f"sqlite:///{path}")
    events = [incident("inc-a-000001", started=1_790_000_000.0),
              incident("inc-b-000002", camera="cam-b", cell="G-02", started=1_790_000_100.0),
              incident("inc-c-000003", type_="street_stall", started=1_790_000_200.0)]
    with database.transaction() as s:
        repo.record_events(s, events, "patrol/v1")
    add_operator(database, "alice", PASSWORD)
    add_operator(database, "bob", PASSWORD + "!")
    database.dispose()  # closing the last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def db(tmp_path: Path, template_db: Path) -> Iterator[Database]:
    for part in template_db.parent.glob("patrol.db*"):
        shutil.copy(part, tmp_path / part.name)
    database = open_database(f"sqlite:///{tmp_path / 'patrol.db'}", migrate=False)
    yield database
    database.dispose()


@pytest.fixture
def ctx(db: Database, tmp_path: Path) -> ReviewContext:
    store = EvidenceStore(tmp_path / "evidence")
    folder = store.incident_dir("inc-a-000001")
    folder.mkdir(parents=True)
    (folder / "snapshot.jpg").write_bytes(b"\xff\xd8fakejpeg")
    (tmp_path / "secret.txt").write_text("TOP SECRET outside the store")
    return ReviewContext(db=db, store=store, codec=SessionCodec(b"k" * 64, 3600), timezone="Asia/Shanghai",
                         metrics_token="scrape-token")


@pytest.fixture
def client(ctx: ReviewContext) -> TestClient:
    return TestClient(create_app(ctx), follow_redirects=False)


@pytest.fixture(scope="session")
def street_run(tmp_path_factory: pytest.TempPathFactory, asset_path) -> Path:  # type: ignore[no-untyped-def]
    """A folder with the recorded street run (tests/review/street_run.py): ``patrol.db`` with its
    incidents and unsent outbox, ``evidence/``. Recorded once (18 s at the camera's pace); copy it with
    :func:`street_run.copy_run` before changing anything."""
    folder = tmp_path_factory.mktemp("street-run")
    # the worker's sink only commits to the outbox: no broker is reached while recording
    config = street_site(folder, asset_path("vehicle_counting_input_video"), broker_port=1)
    database = open_database(config.database.url)
    run_pipeline(config, database)
    database.dispose()  # closing the last connection checkpoints the WAL into the file
    return folder
