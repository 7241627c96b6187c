"""Consumer bootstep: declare the whole topology when the worker connects.

Celery declares the queues a worker consumes; this step also declares the
exchanges, the delay ladders and the dead-letter queues, so a fresh broker is
complete as soon as any worker starts.

On a reconnect the same declarations run in a thread of their own, on a
connection of their own, while the worker consumes again (the queues it
consumes Celery declares itself, before consuming). After a cluster node
froze, a declare of a classic queue homed there (a DLQ) waits until RabbitMQ
has handled the node's loss, which took 1 s with one vhost and 7 s more with
eight vhosts of 50 queues each: the worker's failover waited for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps

from config.app import platform_config
from config.topology import Topology
from workers.broker import declare_topology

logger = logging.getLogger(__name__)


class DeclareTopology(bootsteps.StartStopStep):
    """Declare exchanges, work, delay and dead-letter queues on (re)connect."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        #: Whether this worker declared the topology once (at its first start).
        self.declared = False
        #: The declarations of the last reconnect, if they still run.
        self.again: threading.Thread | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        topology = platform_config(c.app).topology
        if not self.declared:
            count = declare_topology(c.connection, topology)
            self.declared = True
            logger.info("declared platform topology: %d queues", count)
            return
        if self.again is not None and self.again.is_alive():
            return  # the last reconnect's declarations still wait on the broker
        self.again = threading.Thread(
            target=declare_again,
            args=(c.connection.clone(), topology),
            name="platform-topology",
            daemon=True,
        )
        self.again.start()


def declare_again(connection: Any, topology: Topology) -> None:
    """Declare ``topology`` on ``connection`` (a clone of the worker's), then close it; errors are logged."""
    try:
        with connection:
            count = declare_topology(connection, topology)
        logger.info("declared platform topology again after a reconnect: %d queues", count)
    except Exception as exc:  # noqa: BLE001 - a thread's failure must be seen, never kill the worker
        logger.warning("could not declare the platform topology after a reconnect: %r", exc)
