"""``patrol check-config FILE...`` and ``patrol config-schema``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from camera_config.loader import load_config
from camera_config.schema import SiteConfig
from core.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("check-config", help="validate site config files; list every problem")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=check_config)
    p = sub.add_parser("config-schema", help="print the JSON Schema of a site config file")
    p.set_defaults(func=config_schema)


def check_config(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            failed += 1
            for line in exc.problems:
                print(line, file=sys.stderr)
            continue
        zones = sum(len(c.zones) for c in cfg.cameras)
        print(f"{path}: ok ({len(cfg.cameras)} camera(s), {zones} zone(s))")
    return 2 if failed else 0


def config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(SiteConfig.model_json_schema(), indent=2))
    return 0
