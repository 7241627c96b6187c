"""Cancel a delayed task: out of the levels, into its queue's DLQ as cancelled, audited."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import amqp

from config.topology import (
    DEAD_LETTER_EXCHANGE,
    dead_letter_queue,
    delay_level,
)
from workers.broker import (
    SCAN_LIMIT,
    QueueMissing,
    close_quietly,
    message_headers,
    queue_depth,
    require_queue,
)
from workers.delivery.classify import ErrorClass
from workers.delivery.headers import (
    Failure,
    Origin,
    failure_headers,
    retry_count,
)
from workers.ops.delays.browsing import waiting_task
from workers.ops.delays.records import CANCEL_ACTION, CANCELLED_ERROR_TYPE, LEVELS_DOWN, DelayedTask
from workers.ops.dlq import DROPPED_PROPERTIES, audit

if TYPE_CHECKING:
    from kombu import Connection

logger = logging.getLogger(__name__)


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
            exchange=str(info.get("exchange") or task.delay_queue),
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
                task = waiting_task(message, level, position)
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
