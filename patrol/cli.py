"""The ``patrol`` command: one entry point, one module per group of subcommands.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` and sets ``func`` on
its parsers; ``func(args) -> int`` is the exit code. Errors from the :mod:`core.errors` tree
are printed as one clear message, never as a traceback.

Exit codes, applied here and nowhere else (:func:`exit_code_for`):

* 0 — done;
* 1 — runtime failure: a database, broker, model, stream, worker or evidence failure, any
  unexpected exception, or stdout closed by the reader (``patrol tickets list | head -1``);
* 2 — config or usage error: bad arguments, a site/label/grid/patch file that does not validate,
  an unknown name, input the command refuses;
* 130 — interrupted: SIGINT (Ctrl-C), whether it broke the command off or a long-running command
  (``patrol run``, the ticket service) stopped cleanly on it; SIGTERM is an ordinary stop (0).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys
from collections.abc import Sequence

from core.errors import AssetError, ConfigError, PatrolError
from core.redact import redact_text
from patrol import signals
from patrol.logs import setup_logging

COMMAND_MODULES: tuple[str, ...] = (
    "patrol.commands.config",
    "patrol.commands.tickets",
    "patrol.commands.models",
    "patrol.commands.detect",
    "patrol.commands.run",
    "patrol.commands.evaluate",
    "patrol.commands.review",
    "patrol.commands.replay",
    "patrol.commands.train",
    "patrol.commands.db",
    "patrol.commands.broker",
)

log = logging.getLogger("patrol")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

USAGE_ERRORS: tuple[str, ...] = (
    "core.errors:ConfigError", "core.errors:AssetError", "core.errors:InputError", "evaluation.labels:LabelError",
    "evaluation.tune:GridError", "evaluation.patch:PatchError", "review.security:ReviewError",
    "tickets.states:TransitionError", "storage.errors:NotFound",
)
"""The :class:`PatrolError` subclasses that mean "what you gave is wrong" (exit 2), named
``module:class`` so the CLI's start does not import their packages; a plain ``PatrolError`` is a
command's refusal of its options (exit 2) too. Every other ``PatrolError`` is a runtime failure."""


def package_version() -> str:
    """The installed distribution's version (``pyproject.toml``'s ``version``), from its metadata."""
    try:
        return importlib.metadata.version("bright-patrol")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def _is_usage_error(exc: PatrolError) -> bool:
    if type(exc) is PatrolError or isinstance(exc, (ConfigError, AssetError)):
        return True
    names = {f"{cls.__module__}:{cls.__qualname__}" for cls in type(exc).__mro__}
    return not names.isdisjoint(USAGE_ERRORS)


def exit_code_for(exc: BaseException) -> int:
    """The one mapping from how a command ended to the process's exit status."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, PatrolError):
        return EXIT_USAGE if _is_usage_error(exc) else EXIT_FAILURE
    return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patrol", description="Bright Patrol video-patrol pipeline.",
                                     epilog="exit status: 0 ok, 1 runtime failure, 2 config or usage error, "
                                            "3 events neither committed nor spilled (patrol run), 130 interrupted")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status (see the module's table); never a traceback for
    an error of ours, a closed pipe or Ctrl-C."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)  # usage errors exit 2 from argparse itself
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    setup_logging(args.log_level, args.log_json)
    signals.forget()
    try:
        code = int(args.func(args) or EXIT_OK)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return EXIT_INTERRUPTED if signals.interrupted() else code
    except BrokenPipeError:
        return _stdout_closed()
    except ConfigError as exc:
        for line in exc.problems:
            print(redact_text(line), file=sys.stderr)
        return exit_code_for(exc)
    except PatrolError as exc:
        print(f"patrol {args.command}: error: {redact_text(str(exc))}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt as exc:
        return exit_code_for(exc)
    except Exception as exc:
        log.critical("patrol %s: unexpected failure: %s", args.command, exc, exc_info=True)
        return exit_code_for(exc)


def _stdout_closed() -> int:
    """The reader of stdout went away (``| head``): point stdout at devnull, as the Python docs
    recommend (signal module, "Note on SIGPIPE"), so the interpreter's final flush stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
