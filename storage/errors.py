"""Errors of the persistence layer, in the :mod:`core.errors` tree."""

from __future__ import annotations

from core.errors import PatrolError


class StorageError(PatrolError):
    """The database cannot be reached, migrated, or refused a statement. Names the redacted URL."""


class NotFound(StorageError):
    """A row asked for by id does not exist."""
