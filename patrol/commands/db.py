"""``patrol db upgrade|current``: the database's schema, by Alembic (through :mod:`storage.db`).

Every service still migrates its database when it opens it; these commands let a deployment do it
as a step of its own (before rolling out new services, or to see where a database stands).
The URL comes from ``--db``, else the site file's ``database.url`` (``--config``), else ``$PATROL_DB``,
else the default SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from camera_config.loader import load_config
from core.errors import PatrolError
from core.redact import redact_text
from storage.db import DEFAULT_URL, Database, current_revision, head_revision, upgrade


def register(sub: Any) -> None:
    p = sub.add_parser("db", help="the database schema: upgrade to this code's migrations, show the current one")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", metavar="FILE", help="site YAML whose database.url is used")
        q.add_argument("--db", metavar="URL", help=f"database URL (overrides --config and $PATROL_DB; "
                                                    f"default {DEFAULT_URL})")

    u = dsub.add_parser("upgrade", help="run the migrations up to REVISION (default: the newest)")
    common(u)
    u.add_argument("--revision", default="head", help="target revision (default head)")
    u.set_defaults(func=cmd_upgrade)
    c = dsub.add_parser("current", help="print the database's revision and this code's head as JSON")
    common(c)
    c.set_defaults(func=cmd_current)


def database_url(args: argparse.Namespace) -> str:
    if args.db:
        return str(args.db)
    if args.config:
        return load_config(args.config).database.url
    return os.environ.get("PATROL_DB") or DEFAULT_URL


def cmd_upgrade(args: argparse.Namespace) -> int:
    db = Database(database_url(args))
    try:
        before = current_revision(db.engine)
        try:
            upgrade(db.engine, args.revision)
        except Exception as exc:
            from alembic.util import CommandError

            if isinstance(exc, CommandError):  # an unknown revision, say
                raise PatrolError(f"--revision {args.revision!r}: {exc}") from exc
            raise
        after = current_revision(db.engine)
    finally:
        db.dispose()
    print(json.dumps({"database": redact_text(db.url), "from": before, "to": after,
                      "migrated": before != after}))
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    db = Database(database_url(args))
    try:
        current = current_revision(db.engine)
    finally:
        db.dispose()
    head = head_revision()
    print(json.dumps({"database": redact_text(db.url), "current": current, "head": head,
                      "up_to_date": current == head}))
    return 0
