"""``patrol db upgrade`` / ``patrol db current`` and the readiness ping, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect

from patrol.cli import main
from storage.db import Database, current_revision, head_revision, head_revisions
from storage.models import Base


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result: dict[str, object] = json.loads(out[-1])
    return result


def test_upgrade_then_current_on_a_fresh_database(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = head_revision()
    assert head_revisions() == (head,)
    before = run_json(capsys, "db", "current", "--db", db_url)
    assert before["current"] is None and before["head"] == head and before["up_to_date"] is False
    database = Database(db_url)
    try:
        assert database.ping() is not None and "no schema" in str(database.ping())
        assert not set(inspect(database.engine).get_table_names()) & set(Base.metadata.tables)
    finally:
        database.dispose()

    up = run_json(capsys, "db", "upgrade", "--db", db_url)
    assert up == {"database": up["database"], "from": None, "to": head, "migrated": True}
    after = run_json(capsys, "db", "current", "--db", db_url)
    assert after["current"] == head and after["up_to_date"] is True
    again = run_json(capsys, "db", "upgrade", "--db", db_url)
    assert again["migrated"] is False and again["from"] == head

    database = Database(db_url)
    try:
        assert current_revision(database.engine) == head
        assert set(inspect(database.engine).get_table_names()) >= set(Base.metadata.tables)
        assert database.ping() is None
    finally:
        database.dispose()


def test_upgrade_to_a_named_revision_then_to_head(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    first = run_json(capsys, "db", "upgrade", "--db", db_url, "--revision", "0001")
    assert first["to"] == "0001"
    database = Database(db_url)
    try:
        reason = database.ping()
        assert reason is not None and "revision 0001" in reason and "patrol db upgrade" in reason
    finally:
        database.dispose()
    assert run_json(capsys, "db", "upgrade", "--db", db_url)["to"] == head_revision()


def test_an_unknown_revision_is_a_usage_error(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--revision", "nope"]) == 2
    assert "--revision 'nope'" in capsys.readouterr().err


def test_the_url_comes_from_the_site_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import yaml

    target = tmp_path / "site.db"
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"site": {"name": "x"}, "database": {"url": f"sqlite:///{target}"},
                                   "cameras": [{"id": "a", "url": "x.mp4", "grid_cell": "G"}]}))
    assert run_json(capsys, "db", "upgrade", "--config", str(cfg))["to"] == head_revision()
    assert target.is_file()


def test_an_unreachable_database_is_a_runtime_failure_without_the_password(
        capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://patrol:hunter2@127.0.0.1:{port}/patrol"
    assert main(["db", "current", "--db", url]) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1" in err and "hunter2" not in err
    database = Database(url)
    try:
        reason = database.ping()
        assert reason is not None and "unreachable" in reason and "hunter2" not in reason
    finally:
        database.dispose()


def test_ping_turns_not_ready_when_postgresql_refuses_connections(postgres_server) -> None:  # type: ignore[no-untyped-def]
    """A database that goes away under a running service: its pooled connections die and new ones
    are refused; the ping says so, and says ready again once it is back."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_server.url.rsplit("/", 1)[0] + "/" + name
    database = Database(url)
    try:
        database.migrate()
        assert database.ping() is None
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                         {"n": name})
        reason = database.ping()
        assert reason is not None and "unreachable" in reason and name in reason
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        assert database.ping() is None
    finally:
        database.dispose()
        admin.dispose()
