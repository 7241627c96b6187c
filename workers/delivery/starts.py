"""Which deliveries a worker actually took: so a message that only waited in a prefetch window
is not counted as poison.

RabbitMQ's delivery count grows each time a message goes back to its queue
unacknowledged, whether a worker was running it or it only waited in the
prefetch window of a worker that died for another message's sake. The poison
check (:mod:`workers.delivery.consumer`) counts the deliveries a worker took,
not the returns: when a worker's prefetch window is above one message per task
slot, each delivery it takes is recorded here, in the state store, before it
runs (one small write per task), and a message is poison once its recorded
takes reach the delivery limit. A worker takes a message when it is about to
run it: a solo worker reads the next message only once the previous one
finished, so the message behind a running one stays unread in the socket and
is never recorded.

RabbitMQ's own limit (``x-delivery-limit``, one above the platform's) still
dead-letters a message returned more often than that, taken or not (reason
``delivery_limit`` in its ``x-death``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from workers.delivery.idempotency import open_store

logger = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS task_redeliveries ("
    " task_id TEXT PRIMARY KEY,"
    " taken INTEGER NOT NULL,"
    " taken_at DOUBLE PRECISION NOT NULL)"
)


class RedeliveryLedger:
    """Deliveries taken per task id, in the state store at ``state_url``.

    Args:
        state_url: the platform's state store URL (``PLATFORM_STATE_URL``).
    """

    def __init__(self, state_url: str) -> None:
        self.state_url = state_url
        self._ready = False

    def _db(self) -> Any:
        store = open_store(self.state_url)
        return store

    def _ensure(self, store: Any) -> None:
        if not self._ready:
            with store.transaction() as db:
                db.execute(SCHEMA)
            self._ready = True

    def taken(self, task_id: str) -> int:
        """How many deliveries of ``task_id`` a worker took (0 if none was recorded)."""
        store = self._db()
        self._ensure(store)
        with store.transaction() as db:
            row = db.execute(
                f"SELECT taken FROM task_redeliveries WHERE task_id = {store.placeholder}", (task_id,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def take(self, task_id: str) -> None:
        """Record that a worker took a delivery of ``task_id`` and is about to run it."""
        store = self._db()
        self._ensure(store)
        mark = store.placeholder
        with store.transaction() as db:
            db.execute(
                f"INSERT INTO task_redeliveries (task_id, taken, taken_at) VALUES ({mark}, 1, {mark}) "
                "ON CONFLICT (task_id) DO UPDATE SET taken = task_redeliveries.taken + 1, "
                "taken_at = excluded.taken_at",
                (task_id, time.time()),
            )


def deliveries_taken(returns: int, recorded: int) -> int:
    """Earlier deliveries of a message that workers took and that ended without an ack (pure).

    Args:
        returns: RabbitMQ's delivery count (earlier deliveries that went back unacknowledged).
        recorded: deliveries recorded as taken before this one (:meth:`RedeliveryLedger.taken`).

    Returns:
        ``recorded``, at most ``returns`` (a take recorded just before an ack
        that the broker still saw is not a return).
    """
    return max(min(returns, recorded), 0)
