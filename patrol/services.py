"""What every long-running command (``patrol run``, ``patrol tickets serve``, ``patrol review serve``)
starts beside its main work: evidence retention on a schedule.

Lives in the CLI layer because it joins the evidence store, the database and the ticket states
(evidence sits below tickets and never imports them).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from camera_config.schema import SiteConfig

log = logging.getLogger("patrol.services")


@contextlib.contextmanager
def evidence_retention(config: SiteConfig | None, db: Any, *, clock: Callable[[], float] | None = None
                       ) -> Iterator[Any]:
    """Run the site's evidence retention every ``evidence.retention.interval_s`` while the block
    runs (yields the :class:`evidence.retention.RetentionScheduler`, or None when there is no site
    config, no database or the interval is 0)."""
    if config is None or db is None or config.evidence.retention.interval_s == 0:
        yield None
        return
    from evidence.keep import open_ticket_keep
    from evidence.retention import RetentionPolicy, RetentionScheduler
    from evidence.store import EvidenceStore
    from tickets.states import OPEN_STATES

    ret = config.evidence.retention
    kwargs = {} if clock is None else {"clock": clock}
    scheduler = RetentionScheduler(EvidenceStore(config.evidence.dir),
                                   RetentionPolicy(ret.max_age_days, ret.max_total_mb),
                                   open_ticket_keep(db, OPEN_STATES), ret.interval_s, **kwargs)
    with scheduler:
        yield scheduler
