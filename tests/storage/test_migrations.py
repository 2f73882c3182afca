"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from storage.db import Database, alembic_config, open_database
from storage.errors import StorageError
from storage.models import Base

CORE_TABLES = {"incidents", "incident_events", "evidence", "camera_health", "tickets", "ticket_history",
               "verdicts", "operators", "dead_letters", "outbox", "inbox"}


def test_migrated_schema_matches_models(db: Database) -> None:
    assert set(Base.metadata.tables) >= CORE_TABLES
    assert set(inspect(db.engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrate_twice_is_harmless(db: Database) -> None:
    db.migrate()
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    assert current == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_default_sqlite_file_lands_in_its_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "data" / "nested" / "patrol.db"
    database = open_database(f"sqlite:///{target}")
    database.dispose()
    assert target.is_file()


@pytest.mark.parametrize("url", ["nonsense-url", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"])
def test_bad_url_is_a_clear_error_without_the_password(url: str) -> None:
    with pytest.raises(StorageError) as info:
        open_database(url)
    assert "hunter2" not in str(info.value)
