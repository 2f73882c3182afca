"""Errors of the evidence store."""

from __future__ import annotations

from core.errors import PatrolError


class EvidenceError(PatrolError):
    """Evidence cannot be written, found or trusted (bad id, path outside the store, failed remux)."""


class UnsafePathError(EvidenceError):
    """A requested path is absolute, climbs out with '..', or resolves outside the evidence store."""
