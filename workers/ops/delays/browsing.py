"""Read the delay levels without consuming: per-level stats and the waiting tasks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import amqp

from config.topology import (
    DELAYED_UNROUTABLE,
    delay_level,
)
from workers.broker import (
    SCAN_LIMIT,
    QueueMissing,
    browse_messages,
    message_headers,
    queue_depth,
)
from workers.ops.delays.records import (
    LEVELS_DOWN,
    DelayedTask,
    DelayStats,
    delayed_task,
    level_stats,
    matches,
    soonest_first,
)

if TYPE_CHECKING:
    from kombu import Connection


def browse_level(connection: Any, level: int, limit: int | None = SCAN_LIMIT) -> Iterator[DelayedTask]:
    """The delayed tasks of ``level``, head first, without consuming any (none if it is missing)."""
    try:
        for position, message in enumerate(browse_messages(connection, delay_level(level), limit)):
            yield waiting_task(message, level, position)
    except QueueMissing:
        return


def waiting_task(message: amqp.Message, level: int, position: int) -> DelayedTask:
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
