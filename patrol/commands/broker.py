"""``patrol broker acl --config SITE``: the mosquitto ACL of a site's per-role accounts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from alerts.acl import site_acl
from camera_config.loader import load_config


def register(sub: Any) -> None:
    p = sub.add_parser("broker", help="broker set-up: the ACL file of the site's per-role accounts")
    bsub = p.add_subparsers(dest="broker_command", required=True)
    a = bsub.add_parser("acl", help="write mosquitto's acl_file for mqtt.accounts (one section per role)",
                        description="Each role (pipeline, tickets, verifier, review) may publish and subscribe "
                                    "only to its own topics; mosquitto refuses the rest. Use it as `acl_file` "
                                    "beside a `password_file` made with mosquitto_passwd.")
    a.add_argument("--config", required=True, metavar="SITE")
    a.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    a.set_defaults(func=broker_acl)


def broker_acl(args: argparse.Namespace) -> int:
    text = site_acl(load_config(args.config).mqtt)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{args.out}: ACL for 4 roles written", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
