"""Replay: move the matching dead letters of a queue back to its original queue.

One message at a time, ``basic_get`` from the head, publish a copy (body byte
for byte, same properties, same task id, ``x-replay-count`` + 1, retry
counters reset so it gets a fresh retry budget, RabbitMQ's ``x-death``
history left out) to its original queue through the default exchange, wait
for the broker's confirm, and only then ack the dead letter. A crash between
confirm and ack duplicates that one message; nothing is lost. Non-matching
messages stay unacked on the channel until the end and are requeued by
closing it, so they keep their order.

The default exchange delivers to exactly the named queue: republishing to the
original exchange would, for an event, deliver it to every subscriber again.

While replaying, a :class:`~workers.ops.dlq.refailures.RefailWatch` sees every
new dead letter of the queue; replayed task ids seen there count as
re-failures, and the replay stops when they exceed ``max_refail_ratio`` of
what was replayed.

:func:`replay` is a loop over small steps, each returning what happened::

    for each letter at the head of the DLQ (at most as many as it held at the start):
        select            -> Skipped (left in place) | Counted (dry run) | Move(target)
        ReplayChannel.move -> Replayed (published, confirmed, acked) | Stop("publish-failed")
        tally             the outcome into the ReplayResult
        every 10 letters: check_refailures -> Stop("refailures") | None
    and once more at the end: the re-failures seen so far
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from config.topology import dead_letter_queue
from workers.broker import close_quietly
from workers.ops.dlq.browsing import dead_letter, require_dead_letter_queue, require_original_queue
from workers.ops.dlq.filters import Filter
from workers.ops.dlq.letters import DeadLetterMessage
from workers.ops.dlq.refailures import MIN_REFAIL_SAMPLE, RefailWatch, refail_check_due, refail_limit_reached
from workers.ops.dlq.replay_steps import (
    STOP_PUBLISH_FAILED,
    STOP_REFAILURES,
    Move,
    Outcome,
    Replayed,
    ReplayProgress,
    ReplayResult,
    Stop,
    pacing_delay,
    replay_copy,
    select,
    tally,
)

if TYPE_CHECKING:
    import amqp
    from kombu import Connection

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- the broker


class ReplayChannel:
    """The replay's own channel on one DLQ: get from the head, publish a copy with a confirm, then ack.

    Closing it requeues every letter that was fetched but not acked, in its place.
    """

    def __init__(
        self,
        connection: Connection,
        queue: str,
        *,
        dry_run: bool,
        confirm_timeout: float,
        pace: Callable[[int], None],
    ) -> None:
        self.connection = connection
        self.dead_letter_queue = dead_letter_queue(queue)
        self.confirm_timeout = confirm_timeout
        self.pace = pace
        self.known_targets: set[str] = set()
        connection.ensure_connection(max_retries=1)
        self.channel = connection.channel()
        self.watch: RefailWatch | None = None
        try:
            if not dry_run:
                self.channel.confirm_select()
                self.watch = RefailWatch(connection, queue)
        except BaseException:
            close_quietly(self.channel)
            raise

    def take(self, total: int) -> Iterator[amqp.Message]:
        """Up to ``total`` letters from the head, unacked (only :meth:`move` acks one)."""
        for _ in range(total):
            message = self.channel.basic_get(self.dead_letter_queue, no_ack=False)
            if message is None:
                return
            yield message

    def move(
        self, letter: DeadLetterMessage, message: amqp.Message, target: str, replayed: int
    ) -> Replayed | Stop:
        """Publish ``letter``'s copy to ``target``, wait for the confirm, then ack the letter.

        ``replayed`` (the letters moved so far) paces the publish.

        Raises:
            UnknownQueue: ``target`` does not exist.
        """
        if target not in self.known_targets:
            require_original_queue(self.connection, target)
            self.known_targets.add(target)
        self.pace(replayed)
        try:
            self.channel.basic_publish_confirm(
                replay_copy(message),
                exchange="",
                routing_key=target,
                mandatory=True,
                confirm_timeout=self.confirm_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - the letter stays; report why
            logger.error(
                "replay of %s stopped: publish to %s failed: %r", self.dead_letter_queue, target, exc
            )
            return Stop(STOP_PUBLISH_FAILED, f"{type(exc).__name__}: {exc}")
        # Confirmed: only now may the dead letter go.
        self.channel.basic_ack(message.delivery_tag)
        if self.watch is not None:
            self.watch.expect(letter.task_id)
        return Replayed(target)

    def refailures(self) -> int:
        """Replayed letters dead-lettered again since the last call (0 in a dry run)."""
        return self.watch.refailures() if self.watch is not None else 0

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
        close_quietly(self.channel)


def check_refailures(
    channel: ReplayChannel, result: ReplayResult, max_ratio: float, min_sample: int
) -> Stop | None:
    """Count the re-failures seen since the last check into ``result``; Stop when there are too many."""
    result.refailed += channel.refailures()
    if not refail_limit_reached(result.refailed, result.replayed, max_ratio, min_sample):
        return None
    logger.warning(
        "replay of %s stopped: %d of %d replayed messages were dead-lettered again",
        channel.dead_letter_queue,
        result.refailed,
        result.replayed,
    )
    return Stop(STOP_REFAILURES)


# ---------------------------------------------------------------- the loop


def replay(
    connection: Connection,
    queue: str,
    selection: Filter | None = None,
    *,
    dry_run: bool = False,
    rate: float | None = None,
    max_refail_ratio: float = 0.5,
    min_refail_sample: int = MIN_REFAIL_SAMPLE,
    confirm_timeout: float = 5.0,
    progress: Callable[[ReplayProgress], None] | None = None,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Move the matching dead letters of ``queue`` back to their original queue.

    Args:
        connection: a kombu connection to the broker.
        queue: the work queue (its DLQ is ``<queue>.dlq``).
        selection: which letters; all by default.
        dry_run: only find and count the matches; nothing is published or acked.
        rate: at most this many messages per second (unlimited by default).
        max_refail_ratio: stop when more than this share of the replayed
            messages was dead-lettered again (judged on at least
            ``min_refail_sample`` messages).
        min_refail_sample: see ``max_refail_ratio``.
        confirm_timeout: seconds to wait for each publish confirm.
        progress: called after every scanned message.
        now: the time age filters are measured from (now by default).

    Returns:
        What happened; ``stopped`` says why it ended early, if it did.

    Raises:
        UnknownQueue: the DLQ or the original queue does not exist.
    """
    selection = selection or Filter()
    now = now or datetime.now(UTC)
    started = clock()
    result = ReplayResult(queue, dry_run, 0, 0, 0, 0, 0, None, 0.0)

    def pace(replayed: int) -> None:
        if (delay := pacing_delay(started, replayed, rate, clock())) > 0:
            sleep(delay)

    channel: ReplayChannel | None = None
    try:
        result.total = require_dead_letter_queue(connection, queue).messages
        channel = ReplayChannel(
            connection, queue, dry_run=dry_run, confirm_timeout=confirm_timeout, pace=pace
        )
        state = ReplayProgress(result.total)
        for message in channel.take(result.total):
            letter = dead_letter(result.scanned, message)
            outcome: Outcome | Move = select(letter, selection, now, dry_run=dry_run, queue=queue)
            if isinstance(outcome, Move):
                outcome = channel.move(letter, message, outcome.target, result.replayed)
            tally(result, letter, outcome)
            if isinstance(outcome, Stop):
                break
            due = not dry_run and refail_check_due(result.scanned, result.total)
            stop = check_refailures(channel, result, max_refail_ratio, min_refail_sample) if due else None
            if stop is not None:
                result.stopped = stop.reason
                break
            if progress is not None:
                progress(state.follow(result))
        if not dry_run and result.stopped is None:
            result.refailed += channel.refailures()
    finally:
        if channel is not None:
            channel.close()
        result.elapsed = clock() - started
    return result
