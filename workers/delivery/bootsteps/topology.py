"""Consumer bootstep: declare the whole topology when the worker connects.

Celery declares the queues a worker consumes; this step also declares the
exchanges, the delay ladders and the dead-letter queues, so a fresh broker is
complete as soon as any worker starts.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from config.app import platform_config
from workers.broker import declare_topology

logger = logging.getLogger(__name__)


class DeclareTopology(bootsteps.StartStopStep):
    """Declare exchanges, work, delay and dead-letter queues on (re)connect."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c: Any) -> None:
        count = declare_topology(c.connection, platform_config(c.app).topology)
        logger.info("declared platform topology: %d queues", count)
