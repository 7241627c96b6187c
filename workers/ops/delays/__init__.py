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

The package, one job a module::

    records      what a waiting message says about itself, stats arithmetic (pure)
    browsing     delay_stats, peek, browse_level: reading without consuming
    cancelling   cancel: out of the levels into the target queue's DLQ, audited
"""

from __future__ import annotations

from workers.ops.delays.browsing import browse_level, delay_stats, peek
from workers.ops.delays.cancelling import (
    CancelFailed,
    Cancelled,
    CancelResult,
    CancelRun,
    cancel,
    cancel_failure,
    cancelled_copy,
    raw_body,
)
from workers.ops.delays.records import (
    CANCEL_ACTION,
    CANCELLED_ERROR_TYPE,
    LEVELS_DOWN,
    DelayedTask,
    DelayKeyError,
    DelayRoute,
    DelayStats,
    LevelStats,
    delayed_task,
    due_time,
    level_stats,
    level_wait_ms,
    matches,
    parse_delay_routing_key,
    soonest_first,
)

__all__ = [
    "CANCELLED_ERROR_TYPE",
    "CANCEL_ACTION",
    "CancelFailed",
    "CancelResult",
    "CancelRun",
    "Cancelled",
    "DelayKeyError",
    "DelayRoute",
    "DelayStats",
    "DelayedTask",
    "LEVELS_DOWN",
    "LevelStats",
    "browse_level",
    "cancel",
    "cancel_failure",
    "cancelled_copy",
    "delay_stats",
    "delayed_task",
    "due_time",
    "level_stats",
    "level_wait_ms",
    "matches",
    "parse_delay_routing_key",
    "peek",
    "raw_body",
    "soonest_first",
]
