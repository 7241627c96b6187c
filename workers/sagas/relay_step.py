"""Consumer bootstep: relay outbox rows that a crash (or a failed publish) left unsent.

A handler relays its own rows right after its commit (:func:`workers.sagas.step.relay_after_commit`);
this step sweeps, every ``PLATFORM_SAGA_RELAY_INTERVAL`` seconds, rows older
than one interval that are still unsent: those of a process killed between
commit and publish, or whose publish the broker did not confirm. Several
workers may sweep the same row at once; the event is then published twice
with the same id, which subscribers absorb. It runs on the consumer's timer
in the worker's main process (a pass is a few milliseconds of SQL and one
confirmed publish batch).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps

from config.app import platform_config
from workers.delivery.idempotency import open_store
from workers.sagas.outbox import relay

logger = logging.getLogger(__name__)


class OutboxRelay(bootsteps.StartStopStep):
    """Publish unsent outbox rows periodically (facts are never lost after their commit)."""

    name = "platform saga outbox relay"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.app = parent.app
        self.interval = platform_config(parent.app).settings.saga_relay_interval
        self.timer: Any = None

    def start(self, c: Any) -> None:
        if self.interval > 0:
            self.timer = c.timer.call_repeatedly(self.interval, self.sweep)

    def stop(self, c: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def shutdown(self, c: Any) -> None:
        self.stop(c)

    def sweep(self) -> int:
        """One pass: rows unsent for longer than an interval. Returns how many were sent."""
        try:
            store = open_store(platform_config(self.app).settings.state_url)
            sent = relay(self.app, store, created_before=time.time() - self.interval)
        except Exception:  # a sweep must never stop a worker; the next one tries again
            logger.exception("outbox relay: sweep failed; retrying in %.1fs", self.interval)
            return 0
        if sent:
            logger.info("outbox relay: sent %d rows left unsent", sent)
        return sent
