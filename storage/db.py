"""Engine, transactions and migrations for one database URL.

Migrations run implicitly when a service opens its database (:func:`open_database`), and explicitly
with ``patrol db upgrade`` / ``patrol db current`` (:func:`upgrade`, :func:`current_revision`,
:func:`head_revision`). :meth:`Database.ping` is the readiness probe: the database answers and its
schema is the one this code expects.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.redact import redact_text
from storage.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_URL = "sqlite:///var/data/patrol.db"
CONNECT_TIMEOUT_S = 10
"""PostgreSQL: give up a connection attempt after this long (a host that drops packets would
otherwise hold a readiness probe or a command for the kernel's TCP timeout, minutes)."""


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL so readers never block the writer; BEGIN IMMEDIATE so two writers queue, not deadlock."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"database url {redact_text(url)!r} is not a SQLAlchemy URL") from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if parsed.get_backend_name() == "postgresql" else {}
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


class Database:
    """One URL: an engine, a session factory and ``transaction()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        SQLAlchemy errors leave as :class:`StorageError` naming the (redacted) URL.
        """
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StorageError(f"database {redact_text(self.url)}: {redact_text(str(exc).splitlines()[0])}") \
                from exc
        finally:
            session.close()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def ping(self) -> str | None:
        """None when the database answers and its schema is at this code's head revision; else why
        not, in one redacted line (readiness probes call this; it never raises)."""
        try:
            with self.engine.connect() as conn:
                current = _current_heads(conn)
        except SQLAlchemyError as exc:
            return f"database {redact_text(self.url)} unreachable: {_first_line(exc)}"
        expected = set(head_revisions())
        if current != expected:
            have = ", ".join(sorted(current)) or "no schema"
            return (f"database {redact_text(self.url)} is at revision {have}, this code expects "
                    f"{', '.join(sorted(expected))} (run: patrol db upgrade)")
        return None


def _first_line(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return redact_text(text[0] if text else type(exc).__name__)


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic's INFO lines (plugins, context impl) are noise on every command and probe."""
    alembic_log = logging.getLogger("alembic")
    previous = alembic_log.level
    alembic_log.setLevel(max(logging.WARNING, previous))
    try:
        yield
    finally:
        alembic_log.setLevel(previous)


def _current_heads(conn: Any) -> set[str]:
    with _quiet_alembic():
        from alembic.migration import MigrationContext

        return set(MigrationContext.configure(conn).get_current_heads())


@functools.cache
def head_revisions() -> tuple[str, ...]:
    """The newest migration revision(s) of this code (read once from ``storage/migrations``)."""
    with _quiet_alembic():
        from alembic.script import ScriptDirectory

        return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def head_revision() -> str:
    """The one head revision (the migrations are a single chain)."""
    heads = head_revisions()
    if len(heads) != 1:
        raise StorageError(f"storage/migrations has {len(heads)} heads ({', '.join(heads)}); expected one chain")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated). A database that cannot be reached is
    a :class:`StorageError` naming the redacted URL."""
    try:
        with engine.connect() as conn:
            heads = _current_heads(conn)
    except SQLAlchemyError as exc:
        raise StorageError(f"database {redact_text(str(engine.url))}: {_first_line(exc)}") from exc
    if len(heads) > 1:
        raise StorageError(f"database {redact_text(str(engine.url))} has several heads: {', '.join(sorted(heads))}")
    return next(iter(heads), None)


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config  # alembic loads only when a database is opened, not per CLI start

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False)
                            .replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> bool:
    """Run the migrations up to ``revision``; a database already there is left alone, quietly.
    True when something was migrated."""
    from alembic import command
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine)
    alembic_log = logging.getLogger("alembic")
    previous = alembic_log.level
    alembic_log.setLevel(max(logging.WARNING, previous))  # its INFO lines are noise on every command
    try:
        with engine.begin() as conn:
            heads = set(ScriptDirectory.from_config(cfg).get_heads()) if revision == "head" else {revision}
            if set(MigrationContext.configure(conn).get_current_heads()) == heads:
                return False
            log.info("migrating database %s to %s", redact_text(str(engine.url)), revision)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            return True
    except OperationalError as exc:
        raise StorageError(f"cannot migrate {redact_text(str(engine.url))}: "
                           f"{redact_text(str(exc.orig))}") from exc
    finally:
        alembic_log.setLevel(previous)


def open_database(url: str | None = None, *, migrate: bool = True) -> Database:
    db = Database(url or DEFAULT_URL)
    if migrate:
        db.migrate()
    return db
