"""Persistence: SQLAlchemy 2 models, a repository of functions, Alembic migrations.

SQLite by default (a file under ``var/data``), PostgreSQL through a ``postgresql+psycopg://`` URL.
Callers use :mod:`storage.repository` functions inside ``with db.transaction() as s:``.
"""

from storage.db import Database, open_database

__all__ = ["Database", "open_database"]
