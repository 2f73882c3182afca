"""The ``patrol`` command: one entry point, one module per group of subcommands.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)`` and sets ``func`` on
its parsers; ``func(args) -> int`` is the exit code. Errors from the :mod:`core.errors` tree
are printed as one clear message (exit 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from core.errors import ConfigError, PatrolError
from core.redact import redact_text
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
    "patrol.commands.broker",
)

log = logging.getLogger("patrol")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="patrol", description="Bright Patrol video-patrol pipeline.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_json)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        for line in exc.problems:
            print(redact_text(line), file=sys.stderr)
        return 2
    except PatrolError as exc:
        print(f"patrol {args.command}: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
