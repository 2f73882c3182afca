"""Build the review app from a site config and serve it with uvicorn.

The server also runs an outbox publisher (its own MQTT transport, ``{client_id}-review``) so verdict
messages go out even when no pipeline runs; it only sends rows that are pending in the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alerts.mqtt import mqtt_transports
from alerts.outbox import OutboxPublisher
from alerts.transport import Endpoint, Transport
from camera_config.schema import SiteConfig
from core.topics import Topics
from evidence.store import EvidenceStore
from pipeline.probes import connected_probe
from review.app import ReviewContext, create_app
from review.security import (
    ReviewError,
    SessionCodec,
    check_role,
    check_username,
    hash_password,
    load_or_create_secret,
)
from storage import repository as repo
from storage.db import Database, open_database

log = logging.getLogger("patrol.review")


@dataclass
class ReviewServices:
    ctx: ReviewContext
    publisher: OutboxPublisher | None
    link: Transport | None


def build_context(config: SiteConfig, db: Database) -> ReviewContext:
    rc = config.review
    token = None
    if rc.metrics_token_file:
        try:
            token = Path(rc.metrics_token_file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ReviewError(f"review.metrics_token_file {rc.metrics_token_file}: cannot read: "
                              f"{exc.strerror or exc}") from exc
    return ReviewContext(db=db, store=EvidenceStore(config.evidence.dir),
                         codec=SessionCodec(load_or_create_secret(rc.secret_file), rc.session_max_age_s),
                         topic_prefix=config.mqtt.topic_prefix, timezone=config.site.timezone,
                         site_name=config.site.name, metrics_token=token, secure_cookies=rc.secure_cookies,
                         language=rc.language)


@contextmanager
def review_services(config: SiteConfig, *, mqtt: bool = True) -> Iterator[ReviewServices]:
    db = open_database(config.database.url)
    ctx = build_context(config, db)
    link = publisher = None
    if mqtt:
        link = mqtt_transports(config.mqtt.for_role("review"))(Endpoint(f"{config.mqtt.client_id}-review"))
        publisher = OutboxPublisher(db, link, topics=Topics(config.mqtt.topic_prefix))
        ctx.wake_outbox = publisher.wake
        ctx.probes["broker"] = connected_probe(link, f"broker {config.mqtt.host}:{config.mqtt.port}")
        link.start()
        publisher.start()
    try:
        yield ReviewServices(ctx, publisher, link)
    finally:
        if publisher is not None:
            publisher.stop()
        if link is not None:
            link.stop(offline=False)
        db.dispose()


def serve(config: SiteConfig, host: str | None = None, port: int | None = None,
          site_file: str | None = None, latest_frames: str | None = None) -> None:
    """``site_file``: the YAML ``config`` was loaded from, which the camera pages may edit;
    ``latest_frames``: the folder ``patrol run --latest-frames`` writes each camera's latest frame to."""
    import uvicorn

    with review_services(config) as services:
        services.ctx.site_file = site_file
        services.ctx.snapshots_dir = latest_frames
        app = create_app(services.ctx)
        h, p = host or config.review.host, port or config.review.port
        print(f"review page: http://{h}:{p}/  (log in with an operator from 'patrol review add-operator')",
              flush=True)
        uvicorn.run(app, host=h, port=p, log_level="warning", proxy_headers=False)


def add_operator(db: Database, username: str, password: str, *, role: str = "operator",
                 department: str | None = None) -> None:
    check_username(username)
    role, department = check_role(role, department)
    hashed = hash_password(password)
    with db.transaction() as s:
        if repo.get_operator(s, username) is not None:
            raise ReviewError(f"operator {username!r} already exists")
        repo.create_operator(s, username, hashed, role=role, department=department)


def remove_operator(db: Database, username: str) -> None:
    """Delete an account; its sessions are revoked with it."""
    with db.transaction() as s:
        if not repo.delete_operator(s, username, time.time()):
            raise ReviewError(f"no operator {username!r}")


def disable_operator(db: Database, username: str, disabled: bool = True) -> None:
    """Disable an account (its sessions are revoked, it cannot log in) or enable it again."""
    with db.transaction() as s:
        if not repo.set_operator_disabled(s, username, disabled, time.time()):
            raise ReviewError(f"no operator {username!r}")
