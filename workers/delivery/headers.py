"""Header names and the metadata a failed message carries (pure, no I/O).

A message republished to a delay queue or to a dead-letter queue keeps its
body byte for byte and all its original headers, and gains the ``x-`` headers
below. The names are the contract operators rely on (DESIGN.md).
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
    headers = dict(original or {})
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
