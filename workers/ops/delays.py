"""Delayed tasks as operators see them: browse the delay levels, count them, cancel one (no CLI here).

A delayed task (``countdown`` / ``eta``) waits in the quorum queues
``platform.delay.0`` .. ``platform.delay.27`` (config.topology). What a waiting
message says about itself::

    routing key   0.0.1 ... 1.orders        the delay's 28 bits, highest level first,
                  '-------' '----'          then the target queue (everything after
                   28 bits  target          the 28th word: ``email.events`` too)
    headers       id, task, ...             Celery's task headers
                  x-delay-due-at            when it is due (ISO 8601 UTC)
    queue         platform.delay.N          the level it waits in now

- :func:`delay_stats`: every level's depth (a passive declare) and the next
  due time among its browsed messages; the unroutable catch-all's depth.
- :func:`peek`: the delayed tasks, soonest due first, optionally of one task
  id or one target queue. Nothing is consumed.
- :func:`cancel`: a task's delayed message(s) out of the levels, into its
  target queue's DLQ (``x-error-class: cancelled``), so ``dlq replay`` can run
  it later; each move is audited in the DLQ audit log.

Browsing is :func:`workers.broker.browse_messages`: ``basic_get`` without ack
on one channel per level, then the channel is closed and RabbitMQ puts every
message back. On these quorum queues that counts as a delivery, which is
harmless here: no worker consumes a level, the levels have no delivery limit,
and the count starts again in the work queue the message is dead-lettered to.
(RabbitMQ 4.0 to 4.2 give every quorum queue a default delivery limit of 20
and count a closed channel's returns; there a level needs an explicit
``x-delivery-limit``, or browsing it often, as a metrics scrape does, would
move a message on before its wait is over.)

Levels are scanned from the highest down, the way messages flow, so a message
that moves on while the scan runs is met again further down rather than
missed; :func:`peek` lists such a message once. A message held by a browse
can't expire until the browse lets it go, so each scan delays a level's head
by the time it takes (milliseconds). At most :data:`workers.broker.SCAN_LIMIT`
messages are read from each level.

How a cancel moves one message (the DLQ replay's guarantee, the other way)::

    for each level, highest first, on a channel of its own in confirm mode:
        basic_get (no ack) up to the level's depth
            not the task id   -> left unacked: closing the channel puts it back
            the task id       -> copy (body byte for byte, failure headers) to
                                 platform.dlx, key = target queue -> <target>.dlq;
                                 wait for the confirm; only then ack; audit
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import amqp

from config.topology import (
    DEAD_LETTER_EXCHANGE,
    DELAY_ENTRY_EXCHANGE,
    DELAY_LEVELS,
    DELAY_RESOLUTION_MS,
    DELAYED_UNROUTABLE,
    dead_letter_queue,
    delay_level,
)
from workers.broker import (
    SCAN_LIMIT,
    QueueMissing,
    browse_messages,
    close_quietly,
    message_headers,
    queue_depth,
    require_queue,
)
from workers.delivery.classify import ErrorClass
from workers.delivery.delays import levels_waited
from workers.delivery.headers import (
    DELAY_DUE_AT,
    TASK_ID,
    TASK_NAME,
    Failure,
    Origin,
    failure_headers,
    retry_count,
)
from workers.ops.dlq import DROPPED_PROPERTIES, audit

if TYPE_CHECKING:
    from kombu import Connection

logger = logging.getLogger(__name__)

#: ``x-error-type`` of a delayed task an operator cancelled.
CANCELLED_ERROR_TYPE = "DelayCancelled"
#: The audit log's ``action`` of a cancel.
CANCEL_ACTION = "cancel"
#: Levels from the highest down: the way a message moves through them.
LEVELS_DOWN = tuple(range(DELAY_LEVELS - 1, -1, -1))


# ------------------------------------------------------------------ the model (pure)


class DelayKeyError(ValueError):
    """A routing key that is not a delay key (28 words of 0 or 1, then a queue)."""


@dataclass(frozen=True)
class DelayRoute:
    """What a delay routing key says: the whole delay in units, and where it goes after."""

    #: The delay in units of ``DELAY_RESOLUTION_MS`` (its bits are the levels it waits in).
    units: int
    #: The work queue it goes to when due.
    target: str

    @property
    def levels(self) -> list[int]:
        """The levels it waits in, highest first."""
        return levels_waited(self.units)


def parse_delay_routing_key(key: str) -> DelayRoute:
    """The delay and target queue of routing key ``key`` (``0.1.....1.orders``).

    The target is everything after the 28th dot-separated word, so a queue
    with dots in its name (``email.events``) is kept whole.

    Raises:
        DelayKeyError: ``key`` has fewer words, a word that is not 0 or 1, or no target.
    """
    words = key.split(".", DELAY_LEVELS)
    if len(words) <= DELAY_LEVELS or not words[DELAY_LEVELS]:
        raise DelayKeyError(f"routing key {key!r} is not {DELAY_LEVELS} delay bits and a queue")
    bits = words[:DELAY_LEVELS]
    if any(bit not in ("0", "1") for bit in bits):
        raise DelayKeyError(f"routing key {key!r} has a delay bit that is not 0 or 1")
    return DelayRoute(int("".join(bits), 2), words[DELAY_LEVELS])


def due_time(value: Any) -> datetime | None:
    """An ``x-delay-due-at`` value as an aware UTC datetime, or None when missing or malformed."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def level_wait_ms(level: int) -> int:
    """How long every message in ``level`` waits there, in milliseconds."""
    return int(DELAY_RESOLUTION_MS * 2**level)


@dataclass(frozen=True)
class DelayedTask:
    """One delayed message, as browsed in a level (nothing about it was changed)."""

    task_id: str
    task_name: str
    #: The work queue it goes to when due; None when its routing key is not a delay key.
    target_queue: str | None
    #: When it is due (``x-delay-due-at``); None when the header is missing or malformed.
    due_at: datetime | None
    #: The level it waits in now.
    level: int
    #: 0-based place in the level's queue, head first.
    position: int
    routing_key: str
    #: The levels its whole delay waits in, highest first (the routing key's set bits).
    levels: tuple[int, ...] = ()

    @property
    def delay_queue(self) -> str:
        return delay_level(self.level)

    def seconds_until_due(self, now: datetime) -> float | None:
        """Seconds from ``now`` until it is due (negative when late), or None when unknown."""
        return None if self.due_at is None else (self.due_at - now).total_seconds()

    def record(self, now: datetime) -> dict[str, Any]:
        """A JSON-ready dict of this task (times ISO 8601)."""
        return {
            "task_id": self.task_id,
            "task_name": self.task_name,
            "target_queue": self.target_queue,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "due_in_seconds": self.seconds_until_due(now),
            "level": self.level,
            "delay_queue": self.delay_queue,
            "position": self.position,
            "levels": list(self.levels),
            "routing_key": self.routing_key,
        }


def delayed_task(headers: Mapping[str, Any], routing_key: str, level: int, position: int) -> DelayedTask:
    """The delayed task of a message with ``headers`` and ``routing_key``, found in ``level``."""
    try:
        route: DelayRoute | None = parse_delay_routing_key(routing_key)
    except DelayKeyError:
        route = None
    return DelayedTask(
        task_id=str(headers.get("id") or headers.get(TASK_ID) or ""),
        task_name=str(headers.get("task") or headers.get(TASK_NAME) or ""),
        target_queue=route.target if route else None,
        due_at=due_time(headers.get(DELAY_DUE_AT)),
        level=level,
        position=position,
        routing_key=routing_key,
        levels=tuple(route.levels) if route else (),
    )


def matches(task: DelayedTask, task_id: str | None = None, queue: str | None = None) -> bool:
    """Whether ``task`` has that task id and that target queue (None: any)."""
    return (task_id is None or task.task_id == task_id) and (queue is None or task.target_queue == queue)


def soonest_first(tasks: Iterable[DelayedTask], limit: int | None = None) -> list[DelayedTask]:
    """``tasks`` once each, soonest due first (unknown due times last), at most ``limit``.

    A message met twice (it moved to a lower level while the levels were
    scanned from the top) is listed once, where it was seen last.
    """
    seen: dict[tuple[str, str | None, datetime | None], DelayedTask] = {}
    for task in tasks:
        key = (task.task_id, task.target_queue, task.due_at)
        seen.pop(key, None)
        seen[key] = task
    far = datetime.max.replace(tzinfo=UTC)
    ordered = sorted(seen.values(), key=lambda task: (task.due_at or far, -task.level, task.position))
    return ordered if limit is None else ordered[:limit]


@dataclass(frozen=True)
class LevelStats:
    """One delay level: its depth and the soonest due of the messages browsed."""

    level: int
    #: Ready messages (a passive declare); None when the queue does not exist.
    messages: int | None
    #: Messages read to find the next due time (at most ``SCAN_LIMIT``).
    browsed: int
    next_due_at: datetime | None

    @property
    def queue(self) -> str:
        return delay_level(self.level)

    @property
    def wait_ms(self) -> int:
        return level_wait_ms(self.level)

    @property
    def truncated(self) -> bool:
        """True when the level held more than was browsed (its next due covers the head only)."""
        return (self.messages or 0) > self.browsed


def level_stats(level: int, messages: int | None, tasks: Iterable[DelayedTask]) -> LevelStats:
    """The stats of ``level`` from its depth and the tasks browsed in it (pure)."""
    browsed = list(tasks)
    due = [task.due_at for task in browsed if task.due_at is not None]
    return LevelStats(level, messages, len(browsed), min(due) if due else None)


@dataclass(frozen=True)
class DelayStats:
    """Every delay level, and the catch-all of due messages whose queue is gone."""

    #: Highest level first.
    levels: tuple[LevelStats, ...]
    #: Messages in ``platform.delayed.unroutable``; None when it does not exist.
    unroutable: int | None

    @property
    def messages(self) -> int:
        """Delayed messages waiting in all levels (missing levels count 0)."""
        return sum(stats.messages or 0 for stats in self.levels)

    @property
    def missing(self) -> list[str]:
        """Level queues that do not exist (the topology is not declared)."""
        return [stats.queue for stats in self.levels if stats.messages is None]

    @property
    def next_due_at(self) -> datetime | None:
        """The soonest due time among the browsed messages of every level."""
        due = [stats.next_due_at for stats in self.levels if stats.next_due_at is not None]
        return min(due) if due else None

    def next_due_seconds(self, now: datetime) -> float | None:
        """Seconds from ``now`` until the soonest due (negative when late), or None when none."""
        due = self.next_due_at
        return None if due is None else (due - now).total_seconds()

    def record(self, now: datetime) -> dict[str, Any]:
        """A JSON-ready dict of these stats."""
        return {
            "messages": self.messages,
            "next_due_at": self.next_due_at.isoformat() if self.next_due_at else None,
            "next_due_in_seconds": self.next_due_seconds(now),
            "unroutable": {"queue": DELAYED_UNROUTABLE, "messages": self.unroutable},
            "missing": self.missing,
            "levels": [
                {
                    "level": stats.level,
                    "queue": stats.queue,
                    "wait_ms": stats.wait_ms,
                    "messages": stats.messages,
                    "browsed": stats.browsed,
                    "truncated": stats.truncated,
                    "next_due_at": stats.next_due_at.isoformat() if stats.next_due_at else None,
                }
                for stats in self.levels
            ],
        }


def cancel_failure(task: DelayedTask, who: str) -> Failure:
    """What a cancelled delayed task's dead letter says went wrong (pure)."""
    due = task.due_at.isoformat(timespec="milliseconds") if task.due_at else "an unknown time"
    return Failure(
        ErrorClass.CANCELLED.value,
        CANCELLED_ERROR_TYPE,
        f"cancelled by {who} while waiting in {task.delay_queue}; it was due at {due}",
    )


def cancelled_copy(
    message: amqp.Message, task: DelayedTask, who: str, now: datetime | None = None
) -> amqp.Message:
    """The dead letter of a cancelled delayed ``message``: same body and properties, failure headers.

    Its ``x-original-queue`` is the target queue, so ``dlq replay`` sends it
    there; its retry count is the one it had (a scheduled retry keeps its
    budget spent so far).
    """
    headers = message_headers(message)
    info = message.delivery_info or {}
    new_headers = failure_headers(
        headers,
        failure=cancel_failure(task, who),
        origin=Origin(
            queue=task.target_queue or "",
            exchange=str(info.get("exchange") or DELAY_ENTRY_EXCHANGE),
            routing_key=task.routing_key,
        ),
        retries=retry_count(headers),
        worker=who,
        traceback_limit=0,  # a cancel has no traceback
        now=now,
    )
    properties = {k: v for k, v in message.properties.items() if k not in DROPPED_PROPERTIES}
    return amqp.Message(raw_body(message), application_headers=new_headers, **properties)


def raw_body(message: amqp.Message) -> bytes:
    """The body bytes as they arrived.

    py-amqp decodes a body that has a ``content_encoding`` into text when it
    can; encoding it back with that encoding gives the same bytes.
    """
    body = message.body
    if isinstance(body, bytes):
        return body
    return str(body).encode(message.properties.get("content_encoding") or "utf-8")


# ------------------------------------------------------------------ browsing


def browse_level(connection: Any, level: int, limit: int | None = SCAN_LIMIT) -> Iterator[DelayedTask]:
    """The delayed tasks of ``level``, head first, without consuming any (none if it is missing)."""
    try:
        for position, message in enumerate(browse_messages(connection, delay_level(level), limit)):
            yield _task_of(message, level, position)
    except QueueMissing:
        return


def _task_of(message: amqp.Message, level: int, position: int) -> DelayedTask:
    routing_key = str((message.delivery_info or {}).get("routing_key") or "")
    return delayed_task(message_headers(message), routing_key, level, position)


def delay_stats(connection: Connection, scan_limit: int = SCAN_LIMIT) -> DelayStats:
    """Every level's depth and soonest due (its first ``scan_limit`` messages), and the catch-all's depth.

    Args:
        connection: a kombu connection to the broker.
        scan_limit: most messages browsed per level for the next due time.
    """
    levels = []
    for level in LEVELS_DOWN:
        depth = queue_depth(connection, delay_level(level))
        messages = depth.messages if depth else None
        browsed = browse_level(connection, level, scan_limit) if messages else iter(())
        levels.append(level_stats(level, messages, browsed))
    unroutable = queue_depth(connection, DELAYED_UNROUTABLE)
    return DelayStats(tuple(levels), unroutable.messages if unroutable else None)


def peek(
    connection: Connection,
    limit: int | None = 50,
    task_id: str | None = None,
    queue: str | None = None,
    scan_limit: int = SCAN_LIMIT,
) -> list[DelayedTask]:
    """The delayed tasks of every level, soonest due first; nothing is consumed.

    Args:
        connection: a kombu connection to the broker.
        limit: return at most this many (all by default).
        task_id: only this task id.
        queue: only tasks going to this work queue.
        scan_limit: most messages read from each level.
    """
    found = (
        task
        for level in LEVELS_DOWN
        for task in browse_level(connection, level, scan_limit)
        if matches(task, task_id, queue)
    )
    return soonest_first(found, limit)


# ------------------------------------------------------------------ cancelling


@dataclass(frozen=True)
class Cancelled:
    """One delayed message moved to its target queue's DLQ (confirmed, then acked)."""

    task: DelayedTask
    dead_letter_queue: str


@dataclass
class CancelResult:
    """What a cancel did."""

    task_id: str
    cancelled: list[Cancelled] = field(default_factory=list)
    #: Messages read from the levels.
    scanned: int = 0
    #: Levels that held more than ``scan_limit``: their tail was not searched.
    truncated: list[int] = field(default_factory=list)

    def record(self, now: datetime) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "cancelled": [
                {**item.task.record(now), "dead_letter_queue": item.dead_letter_queue}
                for item in self.cancelled
            ],
            "scanned": self.scanned,
            "truncated_levels": self.truncated,
        }


class CancelFailed(RuntimeError):
    """A matching message could not be moved; it is still in its level.

    ``result`` holds what was moved (and audited) before.
    """

    def __init__(self, message: str, result: CancelResult) -> None:
        super().__init__(message)
        self.result = result


def cancel(
    connection: Connection,
    task_id: str,
    *,
    who: str,
    run_dir: str | Path,
    confirm_timeout: float = 5.0,
    scan_limit: int = SCAN_LIMIT,
    now: datetime | None = None,
) -> CancelResult:
    """Move the delayed message(s) of ``task_id`` to their target queue's DLQ, and audit each.

    Each copy goes through the dead-letter exchange (routing key: the target
    queue) with a confirm, with ``x-error-class: cancelled``; only then is the
    delayed message acked. Every other message stays in its level, in place.
    Each move is recorded in ``<run_dir>/dlq-audit.jsonl``.

    Args:
        connection: a kombu connection to the broker.
        task_id: the task whose delayed message(s) to cancel.
        who: the operator, as the dead letter and the audit record name them.
        run_dir: the run folder holding the audit file.
        confirm_timeout: seconds to wait for each publish confirm.
        scan_limit: most messages read from each level.
        now: the time written as the failure time (now by default).

    Returns:
        What was moved (nothing when no delayed message has that id).

    Raises:
        ValueError: ``task_id`` is empty.
        CancelFailed: a matching message has no target queue, its DLQ does not
            exist, or the broker refused or did not confirm the copy; it is
            still in its level (what was moved before is audited, in ``result``).
    """
    if not task_id:
        raise ValueError("a task id is needed to cancel a delayed task")
    run = CancelRun(connection, CancelResult(task_id), who, run_dir, confirm_timeout, now)
    for level in LEVELS_DOWN:
        depth = queue_depth(connection, delay_level(level))
        if not depth or not depth.messages:
            continue
        if depth.messages > scan_limit:
            run.result.truncated.append(level)
        run.search(level, min(depth.messages, scan_limit))
    return run.result


@dataclass
class CancelRun:
    """One cancel's broker work: search a level on a confirm channel of its own, move the matches."""

    connection: Connection
    result: CancelResult
    who: str
    run_dir: str | Path
    confirm_timeout: float
    now: datetime | None

    def search(self, level: int, wanted: int) -> None:
        """Read ``level``'s first ``wanted`` messages; move (and audit) those of the task id."""
        self.connection.ensure_connection(max_retries=1)
        channel = self.connection.channel()
        try:
            channel.confirm_select()
            for position in range(wanted):
                message = channel.basic_get(delay_level(level), no_ack=False)
                if message is None:
                    return
                self.result.scanned += 1
                task = _task_of(message, level, position)
                if task.task_id != self.result.task_id:
                    continue  # left unacked: closing the channel puts it back in its place
                moved = self.move(channel, message, task)
                self.result.cancelled.append(moved)
                audit(
                    self.run_dir,
                    CANCEL_ACTION,
                    moved.dead_letter_queue,
                    self.who,
                    task_id=task.task_id,
                    task_name=task.task_name,
                    delay_queue=task.delay_queue,
                    target_queue=task.target_queue,
                    due_at=task.due_at,
                )
        finally:
            close_quietly(channel)

    def move(self, channel: Any, message: amqp.Message, task: DelayedTask) -> Cancelled:
        """Publish ``message``'s dead letter, wait for the confirm, then ack it.

        Raises:
            CancelFailed: no target, no DLQ, or the copy was not confirmed (nothing acked).
        """
        where = f"the delayed message of task {task.task_id} in {task.delay_queue}"
        if task.target_queue is None:
            raise CancelFailed(
                f"{where} has routing key {task.routing_key!r}, which names no target queue", self.result
            )
        target_dlq = dead_letter_queue(task.target_queue)
        try:
            require_queue(self.connection, target_dlq)
        except QueueMissing:
            raise CancelFailed(
                f"{where} not moved: its dead-letter queue {target_dlq!r} does not exist", self.result
            ) from None
        try:
            channel.basic_publish_confirm(
                cancelled_copy(message, task, self.who, self.now),
                exchange=DEAD_LETTER_EXCHANGE,
                routing_key=task.target_queue,
                mandatory=True,
                confirm_timeout=self.confirm_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - the message stays in its level; say why
            logger.error("cancel of %s failed: publish to %s: %r", where, target_dlq, exc)
            raise CancelFailed(
                f"{where} not moved: the broker did not confirm its copy to {target_dlq} "
                f"({type(exc).__name__}: {exc}); it is still waiting",
                self.result,
            ) from None
        # Confirmed: only now may the delayed message go.
        channel.basic_ack(message.delivery_tag)
        logger.info("cancelled %s (by %s): moved to %s", where, self.who, target_dlq)
        return Cancelled(task, target_dlq)
