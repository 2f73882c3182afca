"""``patrol check-config FILE...``, ``patrol config-schema`` and ``patrol config apply PATCH``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from camera_config.loader import load_config
from camera_config.schema import SiteConfig
from core.errors import ConfigError
from core.redact import redact_text


def register(sub: Any) -> None:
    p = sub.add_parser("check-config", help="validate site config files; list every problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=check_config)
    p = sub.add_parser("config-schema", help="print the JSON Schema of a site config file")
    p.set_defaults(func=config_schema)
    p = sub.add_parser("config", help="change config files: apply a reviewed `patrol tune` patch")
    csub = p.add_subparsers(dest="config_command", required=True)
    a = csub.add_parser(
        "apply", help="apply a reviewed `patrol tune` patch (validated by the schema, the original backed up)",
        description="Write each camera's changed zone fields into its label files (or --to FILE: site or label "
                    "files). Every field must still hold the patch's `old` value, the result must pass the "
                    "config schema, and each file is backed up to FILE.bak-<UTC time> before it is replaced; "
                    "comments are kept where the change can be made on the line.")
    a.add_argument("patch", metavar="PATCH", help="the YAML patch `patrol tune --out` wrote")
    a.add_argument("--to", action="append", metavar="FILE", help="apply to this file instead (repeatable)")
    a.add_argument("--force", action="store_true", help="apply even where a field no longer holds its `old` value")
    a.add_argument("--dry-run", action="store_true", help="check and list the changes; write nothing")
    a.set_defaults(func=config_apply)


def check_config(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            failed += 1
            for line in exc.problems:
                print(redact_text(line), file=sys.stderr)
            continue
        zones = sum(len(c.zones) for c in cfg.cameras)
        print(f"{path}: ok ({len(cfg.cameras)} camera(s), {zones} zone(s))")
    return 2 if failed else 0


def config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(SiteConfig.model_json_schema(), indent=2))
    return 0


def config_apply(args: argparse.Namespace) -> int:
    from evaluation.patch import apply_patch

    targets = [Path(p) for p in args.to] if args.to else None
    applied = apply_patch(Path(args.patch), targets, force=args.force, dry_run=args.dry_run)
    for a in applied:
        where = "would change" if args.dry_run else f"changed (backup {a.backup})"
        print(f"{a.path}: {where}")
        for line in a.changes:
            print(f"  {line}")
        if not a.kept_comments:
            print("  note: written by the YAML dumper; comments are only in the backup", file=sys.stderr)
    if not applied:
        print("nothing to apply: the patch changes no field", file=sys.stderr)
    return 0
