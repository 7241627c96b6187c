"""Header names and the metadata a failed message carries (pure, no I/O).

Every ``x-`` message header the platform reads or writes is named here, once.
A message republished to a delay queue or to a dead-letter queue keeps its
body byte for byte and its original headers, and gains the failure headers
below; the names are the contract operators rely on (DESIGN.md).

The one thing never carried over is RabbitMQ's own dead-letter history
(``x-death`` and its ``x-first-death-*`` / ``x-last-death-*`` companions).
A delay queue dead-letters back into its work queue, so a copy that kept a
history naming that work queue would close a cycle, and RabbitMQ before 4.0
silently drops a message whose cycle it reads as fully automatic ("Dead-letter
queues cycle detected"; https://www.rabbitmq.com/docs/dlx#routing-dead-lettered-messages).
What operators need of that history is kept in the platform's own
``x-broker-death-*`` headers instead (:func:`without_broker_history`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ORIGINAL_QUEUE = "x-original-queue"
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
TASK_NAME = "x-task-name"
TASK_ID = "x-task-id"
ERROR_CLASS = "x-error-class"
ERROR_TYPE = "x-error-type"
ERROR_MESSAGE = "x-error-message"
ERROR_TRACEBACK = "x-error-traceback"
RETRY_COUNT = "x-retry-count"
FIRST_FAILED_AT = "x-first-failed-at"
LAST_FAILED_AT = "x-last-failed-at"
WORKER = "x-worker"
#: Times a message was replayed from its dead-letter queue.
REPLAY_COUNT = "x-replay-count"
#: Deliveries of a message, counted by quorum queues.
DELIVERY_COUNT = "x-delivery-count"
#: Celery protocol 2's own retry counter, kept equal to ``x-retry-count``.
CELERY_RETRIES = "retries"

#: RabbitMQ's dead-letter history (a list of tables, newest first) and its summaries.
X_DEATH = "x-death"
X_FIRST_DEATH_PREFIX = "x-first-death-"
X_LAST_DEATH_PREFIX = "x-last-death-"
#: Why the broker last dead-lettered the message (``delivery_limit``, ``expired``, ``maxlen``...).
BROKER_DEATH_REASON = "x-broker-death-reason"
#: The queue the broker last dead-lettered it from.
BROKER_DEATH_QUEUE = "x-broker-death-queue"
#: When the broker last dead-lettered it (ISO 8601 UTC).
BROKER_DEATH_AT = "x-broker-death-at"

#: When a delayed task is due (ISO 8601 UTC), set when it enters the delay levels.
DELAY_DUE_AT = "x-delay-due-at"
#: The slot of a rate-limited task that waits in the delay levels: ``<worker> <unix time>``.
RATE_SLOT = "x-rate-limit-slot"
#: Message properties that were not UTF-8 on receipt: name -> their raw bytes. Set by the
#: frame reader (:mod:`workers.frames`, below every wing and not pure, so it names it too;
#: a unit test keeps the two equal).
UNDECODABLE_PROPERTIES = "x-undecodable-properties"

#: The event type of a delivery translated from a CloudEvent (kept on retries and dead letters).
EVENT_TYPE = "x-event-type"
#: The schema version of that event type.
EVENT_SCHEMA_VERSION = "x-event-schema-version"
#: The marker a backfill appends to the event log (its value is unique per run).
BACKFILL_MARKER = "x-backfill-marker"
#: Added to every event a backfill copies: the log it was copied from.
BACKFILLED_FROM = "x-backfilled-from"
#: A stream delivery's offset (set by RabbitMQ; not copied along).
STREAM_OFFSET = "x-stream-offset"

#: Longest ``x-error-message`` kept, in characters.
MESSAGE_LIMIT = 1000


@dataclass(frozen=True)
class Origin:
    """Where a message was consumed from."""

    queue: str
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class Failure:
    """What went wrong, in a form that crosses process boundaries."""

    error_class: str
    error_type: str
    error_message: str
    traceback: str = ""


def bounded(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, keeping the end (where errors are)."""
    if len(text) <= limit:
        return text
    marker = "...[truncated]...\n"
    return marker + text[-(limit - len(marker)) :]


def utc_timestamp(now: datetime | None = None) -> str:
    """An ISO 8601 UTC timestamp with milliseconds."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def retry_count(headers: Mapping[str, Any] | None) -> int:
    """Retries a message has had so far, from its headers."""
    value = (headers or {}).get(RETRY_COUNT, 0)
    try:
        return max(int(value), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def delivery_count(headers: Mapping[str, Any] | None) -> int:
    """Earlier deliveries of this message that ended without an ack."""
    value = (headers or {}).get(DELIVERY_COUNT, 0)
    try:
        return max(int(value), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


@dataclass(frozen=True)
class BrokerDeath:
    """The latest entry of RabbitMQ's dead-letter history of a message."""

    #: ``delivery_limit``, ``expired``, ``maxlen`` or ``rejected``.
    reason: str
    queue: str
    at: datetime | None
    count: int


def broker_death(headers: Mapping[str, Any] | None) -> BrokerDeath | None:
    """The most recent ``x-death`` entry of ``headers`` (RabbitMQ puts it first), or None."""
    deaths = (headers or {}).get(X_DEATH)
    if not isinstance(deaths, list | tuple):
        return None
    for death in deaths:
        if isinstance(death, Mapping):
            moment = death.get("time")
            count = death.get("count")
            return BrokerDeath(
                reason=str(death.get("reason") or "?"),
                queue=str(death.get("queue") or ""),
                at=moment if isinstance(moment, datetime) else None,
                count=count if isinstance(count, int) and not isinstance(count, bool) else 1,
            )
    return None


def is_broker_history(name: str) -> bool:
    """Whether header ``name`` is part of RabbitMQ's own dead-letter history."""
    return name == X_DEATH or name.startswith((X_FIRST_DEATH_PREFIX, X_LAST_DEATH_PREFIX))


def without_broker_history(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """``headers`` for a copy the platform publishes: RabbitMQ's history out, its gist kept.

    The latest broker dead-lettering (reason, queue, time) is written to
    ``x-broker-death-*`` so operators still see it; every ``x-death`` and
    ``x-first-death-*`` / ``x-last-death-*`` header is dropped, so the copy
    can never be taken for a dead-letter cycle.
    """
    original = dict(headers or {})
    death = broker_death(original)
    kept = {name: value for name, value in original.items() if not is_broker_history(name)}
    if death is not None:
        kept[BROKER_DEATH_REASON] = death.reason
        kept[BROKER_DEATH_QUEUE] = death.queue
        if death.at is not None:
            kept[BROKER_DEATH_AT] = utc_timestamp(
                death.at if death.at.tzinfo else death.at.replace(tzinfo=UTC)
            )
    return kept


def failure_headers(
    original: Mapping[str, Any] | None,
    *,
    failure: Failure,
    origin: Origin,
    retries: int,
    worker: str,
    traceback_limit: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Headers for a failed message's next stop (a delay queue or its DLQ).

    Args:
        original: the headers the message arrived with (kept, including the
            first failure time of an earlier attempt).
        failure: the error.
        origin: the queue, exchange and routing key it was consumed from.
        retries: the value of ``x-retry-count`` to write.
        worker: the worker's node name.
        traceback_limit: longest traceback kept.
        now: the failure time (now by default).

    Returns:
        A new header mapping; ``original`` is not changed.
    """
    headers = without_broker_history(original)
    headers.pop(DELIVERY_COUNT, None)  # the broker's, not ours to carry along
    stamp = utc_timestamp(now)
    task_name = headers.get("task") or headers.get(TASK_NAME) or ""
    task_id = headers.get("id") or headers.get(TASK_ID) or ""
    headers.update(
        {
            ORIGINAL_QUEUE: headers.get(ORIGINAL_QUEUE) or origin.queue,
            ORIGINAL_EXCHANGE: headers.get(ORIGINAL_EXCHANGE, origin.exchange),
            ORIGINAL_ROUTING_KEY: headers.get(ORIGINAL_ROUTING_KEY, origin.routing_key),
            TASK_NAME: str(task_name),
            TASK_ID: str(task_id),
            ERROR_CLASS: failure.error_class,
            ERROR_TYPE: failure.error_type,
            ERROR_MESSAGE: bounded(failure.error_message, MESSAGE_LIMIT),
            ERROR_TRACEBACK: bounded(failure.traceback, traceback_limit),
            RETRY_COUNT: retries,
            FIRST_FAILED_AT: headers.get(FIRST_FAILED_AT) or stamp,
            LAST_FAILED_AT: stamp,
            WORKER: worker,
        }
    )
    if "task" in headers:  # a Celery message: keep its own counter in step
        headers[CELERY_RETRIES] = retries
    return headers
