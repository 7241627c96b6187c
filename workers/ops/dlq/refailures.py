"""Re-failures during a replay: the watch queue that sees them and the rule that stops the replay.

While replaying, a temporary exclusive queue bound to the dead-letter exchange
with the work queue's routing key receives a copy of every new dead letter of
that queue (the DLQ itself still gets its own); replayed task ids seen there
count as re-failures, and the replay stops when they exceed
``max_refail_ratio`` of what was replayed, with at least
:data:`MIN_REFAIL_SAMPLE` to judge by. The watch is read every
:data:`REFAIL_CHECK_EVERY` scanned letters and at the end.

The watch queue is consumed (``no_ack``), not browsed: it belongs to this
replay alone and is deleted with its channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from config.topology import DEAD_LETTER_EXCHANGE
from workers.broker import close_quietly
from workers.ops.dlq.browsing import dead_letter

if TYPE_CHECKING:
    from kombu import Connection

#: Replayed messages that may re-fail before the ratio is judged at all.
MIN_REFAIL_SAMPLE = 10
#: Scanned letters between two readings of the watch queue.
REFAIL_CHECK_EVERY = 10
#: Longest the watch queue may grow between readings (RabbitMQ drops the oldest beyond).
WATCH_MAX_LENGTH = 100_000


def refail_limit_reached(
    refailed: int, replayed: int, max_ratio: float, min_sample: int = MIN_REFAIL_SAMPLE
) -> bool:
    """Whether re-failures exceed ``max_ratio`` of the replayed messages.

    Judged against at least ``min_sample`` messages, so the first failure of a
    replay does not count as 100%.
    """
    return refailed > max_ratio * max(replayed, min_sample)


def refail_check_due(scanned: int, total: int, every: int = REFAIL_CHECK_EVERY) -> bool:
    """Whether to read the watch after ``scanned`` of ``total`` letters: every ``every``, and at the last."""
    return scanned % every == 0 or scanned == total


class RefailWatch:
    """A temporary queue that sees every new dead letter of one work queue."""

    def __init__(self, connection: Connection, queue: str) -> None:
        connection.ensure_connection(max_retries=1)
        self.channel = connection.channel()
        name, _, _ = self.channel.queue_declare(
            "",
            exclusive=True,
            auto_delete=True,
            arguments={"x-queue-type": "classic", "x-max-length": WATCH_MAX_LENGTH},
        )
        self.channel.queue_bind(name, DEAD_LETTER_EXCHANGE, routing_key=queue)
        self.name = name
        #: Task ids replayed so far: the ones whose new dead letters count.
        self.replayed: set[str] = set()

    def expect(self, task_id: str) -> None:
        """Count ``task_id``'s dead letters from now on as re-failures."""
        self.replayed.add(task_id)

    def refailures(self) -> int:
        """How many new dead letters (since the last call) carry a replayed task id."""
        count = 0
        while (message := self.channel.basic_get(self.name, no_ack=True)) is not None:
            if dead_letter(0, message).task_id in self.replayed:
                count += 1
        return count

    def close(self) -> None:
        close_quietly(self.channel)
