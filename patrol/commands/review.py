"""``patrol review serve|add-operator|retention --config FILE``: the operators' review page."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import Any

from camera_config.loader import load_config
from core.errors import PatrolError


def register(sub: Any) -> None:
    p = sub.add_parser("review", help="the operators' review page and its accounts")
    rsub = p.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    s = rsub.add_parser("serve", help="serve the review page (uvicorn) and publish verdicts")
    s.add_argument("--config", required=True, metavar="FILE")
    s.add_argument("--host", help="override review.host")
    s.add_argument("--port", type=int, help="override review.port")
    s.add_argument("--latest-frames", metavar="DIR", help="show the cameras' latest frames from DIR on the camera "
                   "pages (what patrol run --latest-frames DIR writes)")
    s.set_defaults(func=serve)
    a = rsub.add_parser("add-operator", help="create an operator account (password hashed with argon2)")
    a.add_argument("username", metavar="USER")
    a.add_argument("--config", required=True, metavar="FILE")
    a.add_argument("--password-file", metavar="FILE", help="read the password from FILE (first line)")
    a.add_argument("--role", default="operator", choices=("operator", "department", "engineer", "admin"),
                   help="what the account may do (default operator: review incidents; engineer: cameras "
                        "and zones; department: its department's tickets; admin: everything)")
    a.add_argument("--department", metavar="NAME", help="the department of a --role department member")
    a.set_defaults(func=add_operator)
    for name, helptext in (("remove-operator", "delete an operator account (its sessions end at once)"),
                           ("disable-operator", "disable an account (its sessions end; no login)"),
                           ("enable-operator", "enable a disabled account again")):
        d = rsub.add_parser(name, help=helptext)
        d.add_argument("username", metavar="USER")
        d.add_argument("--config", required=True, metavar="FILE")
        d.set_defaults(func=change_operator, change=name)
    r = rsub.add_parser("retention", help="delete old evidence of closed tickets (by age, then total size)")
    r.add_argument("--config", required=True, metavar="FILE")
    r.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    r.set_defaults(func=retention)


def serve(args: argparse.Namespace) -> int:
    from patrol.services import evidence_retention
    from review.server import serve as run_server
    from storage.db import open_database

    config = load_config(args.config)
    retention_db = open_database(config.database.url)  # its own pool: the page's stays the page's
    try:
        with evidence_retention(config, retention_db):
            run_server(config, args.host, args.port, site_file=args.config,
                       latest_frames=args.latest_frames)
    finally:
        retention_db.dispose()
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            raise PatrolError(f"--password-file {args.password_file}: cannot read a password") from exc
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise PatrolError("passwords differ")
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def add_operator(args: argparse.Namespace) -> int:
    from review.server import add_operator as create
    from storage.db import open_database

    config = load_config(args.config)
    password = _read_password(args)
    db = open_database(config.database.url)
    try:
        create(db, args.username, password, role=args.role, department=args.department)
    finally:
        db.dispose()
    print(f"operator {args.username!r} added (role {args.role})")
    return 0


def change_operator(args: argparse.Namespace) -> int:
    from review.server import disable_operator, remove_operator
    from storage.db import open_database

    config = load_config(args.config)
    db = open_database(config.database.url)
    try:
        if args.change == "remove-operator":
            remove_operator(db, args.username)
        else:
            disable_operator(db, args.username, disabled=args.change == "disable-operator")
    finally:
        db.dispose()
    print(f"operator {args.username!r}: {args.change.split('-')[0]}d")
    return 0


def retention(args: argparse.Namespace) -> int:
    from evidence.keep import open_ticket_keep
    from evidence.retention import RetentionPolicy, apply_retention, plan_retention
    from evidence.store import EvidenceStore
    from storage.db import open_database
    from tickets.states import OPEN_STATES

    config = load_config(args.config)
    ev = config.evidence
    policy = RetentionPolicy(ev.retention.max_age_days, ev.retention.max_total_mb)
    db = open_database(config.database.url)
    try:
        store = EvidenceStore(ev.dir)
        keep = open_ticket_keep(db, OPEN_STATES)
        plan = (plan_retention(store.entries(), policy, time.time(), keep) if args.dry_run
                else apply_retention(store, policy, time.time(), keep))
    finally:
        db.dispose()
    verb = "would delete" if args.dry_run else "deleted"
    for entry in plan.delete:
        print(f"{verb} {entry.incident_id} ({entry.size_bytes} bytes)")
    print(f"{verb} {len(plan.delete)} incident folder(s); kept for open tickets: {len(plan.kept_open)}; "
          f"store now {plan.total_bytes_after / 1e6:.1f} MB")
    return 0
