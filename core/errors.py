"""The small exception tree every boundary translates into (``raise ... from exc``).

A user sees which camera, which file, which field — never a bare traceback.
"""

from __future__ import annotations


class PatrolError(Exception):
    """Base of every error Bright Patrol raises on purpose."""


class ConfigError(PatrolError):
    """A config file is missing, unreadable, not YAML, or fails validation.

    ``problems`` holds one line per problem, each naming file, camera and field.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


class AssetError(PatrolError):
    """A registered model or data file is unknown, missing from the cache, or fails its checksum."""


class ModelError(PatrolError):
    """A detector model cannot be loaded or produced output of an unexpected shape."""


class InputError(PatrolError):
    """A file or value named on the command line that the command cannot use (exit status 2)."""


class SourceError(PatrolError):
    """A camera source cannot be opened or decoded. Messages carry the redacted URL only."""

    def __init__(self, camera_id: str, message: str) -> None:
        self.camera_id = camera_id
        super().__init__(f"camera {camera_id!r}: {message}")


class SourceEnded(SourceError):
    """A finite source (a file) reached its end, cleanly or not."""
