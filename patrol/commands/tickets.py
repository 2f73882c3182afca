"""``patrol tickets list|show|transition|overdue|dead-letters|serve|verifier`` (JSON output)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from typing import Any

from camera_config.loader import load_config
from camera_config.schema import MqttConfig, SiteConfig, TicketsConfig
from patrol.services import evidence_retention
from patrol.signals import stop_on_signals
from storage import repository as repo
from storage.db import DEFAULT_URL, Database, open_database
from tickets.states import OPEN_STATES, STATES

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser("tickets", help="the ticket service and its six-step loop")
    tsub = p.add_subparsers(dest="tickets_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", help="site YAML (database url, mqtt, tickets sections)")
        q.add_argument("--db", help=f"database URL (overrides config and $PATROL_DB; default {DEFAULT_URL})")

    q = tsub.add_parser("list", help="tickets, newest first")
    common(q)
    q.add_argument("--state", action="append", choices=STATES, help="repeatable")
    q.add_argument("--camera")
    q.add_argument("--limit", type=int, default=100)
    q.set_defaults(func=cmd_list)

    q = tsub.add_parser("show", help="one ticket with its history and incidents")
    common(q)
    q.add_argument("ticket_id", type=int)
    q.set_defaults(func=cmd_show)

    q = tsub.add_parser("transition", help="move a ticket (validated against the loop)")
    common(q)
    q.add_argument("ticket_id", type=int)
    q.add_argument("state", choices=STATES)
    q.add_argument("--actor", required=True, help="who")
    q.add_argument("--reason", required=True, help="why")
    q.set_defaults(func=cmd_transition)

    q = tsub.add_parser("overdue", help="open tickets past their deadline")
    common(q)
    q.set_defaults(func=cmd_overdue)

    q = tsub.add_parser("dead-letters", help="messages the service could not use, with the reason")
    common(q)
    q.add_argument("--limit", type=int, default=50)
    q.set_defaults(func=cmd_dead_letters)

    q = tsub.add_parser("serve", help="consume incidents from MQTT and keep the tickets")
    common(q)
    q.add_argument("--client-id", help="MQTT client id (one per consumer process; default from config)")
    q.set_defaults(func=cmd_serve)

    q = tsub.add_parser("verifier", help="answer verification requests by re-checking cameras (pipeline side)")
    q.add_argument("--config", required=True, help="site YAML with the cameras and zones")
    q.add_argument("--client-id")
    q.set_defaults(func=cmd_verifier)


def _site(args: argparse.Namespace) -> SiteConfig | None:
    return load_config(args.config) if getattr(args, "config", None) else None


def _db(args: argparse.Namespace, site: SiteConfig | None) -> Database:
    url = args.db or (site.database.url if site else None) or os.environ.get("PATROL_DB") or DEFAULT_URL
    return open_database(url)


def _tickets_cfg(site: SiteConfig | None) -> TicketsConfig:
    return site.tickets if site else TicketsConfig()


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def cmd_list(args: argparse.Namespace) -> int:
    from tickets.desk import ticket_view

    site = _site(args)
    db = _db(args, site)
    with db.transaction() as s:
        rows = repo.list_tickets(s, states=args.state, camera_id=args.camera, limit=args.limit)
        _print([ticket_view(s, t) for t in rows])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from tickets.desk import ticket_view

    site = _site(args)
    db = _db(args, site)
    with db.transaction() as s:
        _print(ticket_view(s, repo.get_ticket(s, args.ticket_id), full=True))
    return 0


def cmd_transition(args: argparse.Namespace) -> int:
    from core.topics import Topics
    from tickets.desk import ticket_view, transition

    site = _site(args)
    db = _db(args, site)
    topics = Topics(site.mqtt.topic_prefix if site else MqttConfig().topic_prefix)
    with db.transaction() as s:
        ticket = transition(s, args.ticket_id, args.state, actor=args.actor, reason=args.reason, topics=topics,
                            verify_duration_s=_tickets_cfg(site).verify_duration_s)
        _print(ticket_view(s, ticket, full=True))
    return 0


def cmd_overdue(args: argparse.Namespace) -> int:
    from tickets.desk import ticket_view

    site = _site(args)
    db = _db(args, site)
    now = time.time()
    with db.transaction() as s:
        _print([ticket_view(s, t, now=now) for t in repo.overdue_tickets(s, now, OPEN_STATES)])
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    site = _site(args)
    db = _db(args, site)
    with db.transaction() as s:
        _print([{"id": d.id, "at": d.at, "topic": d.topic, "size": d.size, "reason": d.reason,
                 "payload_text": (d.payload_text or "")[:200]} for d in repo.list_dead_letters(s, args.limit)])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tickets.service import TicketService

    site = _site(args)
    db = _db(args, site)
    service = TicketService(db, site.mqtt if site else MqttConfig(), _tickets_cfg(site), client_id=args.client_id)
    stop = threading.Event()
    log.info("ticket service running", extra={"client_id": service.client_id})
    with stop_on_signals(stop.set), evidence_retention(site, db):
        service.run(stop)
    log.info("ticket service stopped", extra={"counts": json.dumps(service.counts, sort_keys=True)})
    return 0


def cmd_verifier(args: argparse.Namespace) -> int:
    from alerts.verify import VerifierService

    site = load_config(args.config)
    service = VerifierService(site, client_id=args.client_id)
    stop = threading.Event()
    with stop_on_signals(stop.set):
        service.run(stop)
    return 0
