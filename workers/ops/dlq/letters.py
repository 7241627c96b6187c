"""The dead-letter model: one browsed message, and what its headers say about it (pure).

A dead letter comes from one of two places, and is labelled from either:

- a **worker** dead-lettered it: it carries the platform's failure headers
  (``x-error-class``, ``x-error-type``, ``x-last-failed-at``...);
- the **broker** dead-lettered it (a quorum queue's delivery limit, an
  expired TTL, a length limit, a reject without requeue): it carries
  RabbitMQ's ``x-death`` history, or, for a copy the platform made of such a
  message, the gist of it in ``x-broker-death-*``
  (:func:`workers.delivery.headers.without_broker_history`). Its class comes
  from the broker's reason (:data:`BROKER_ERROR_CLASSES`), its type is
  ``x-death:<reason>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workers.delivery.headers import (
    BROKER_DEATH_AT,
    BROKER_DEATH_REASON,
    ERROR_CLASS,
    ERROR_MESSAGE,
    ERROR_TRACEBACK,
    ERROR_TYPE,
    LAST_FAILED_AT,
    ORIGINAL_QUEUE,
    REPLAY_COUNT,
    TASK_ID,
    TASK_NAME,
    broker_death,
)

#: The error class of a letter the broker dead-lettered, by RabbitMQ's reason
#: (the reasons are listed in https://www.rabbitmq.com/docs/dlx).
BROKER_ERROR_CLASSES = {
    "delivery_limit": "poison",
    "expired": "expired",
    "maxlen": "overflow",
    "rejected": "rejected",
}
#: The class of a broker dead-lettering whose reason is not one of those
#: (a malformed ``x-death``): what every broker-made letter was called before.
UNKNOWN_BROKER_ERROR_CLASS = "poison"


@dataclass(frozen=True)
class DeadLetterMessage:
    """One message in a DLQ, as browsed (nothing about it was changed)."""

    #: 0-based place in the DLQ, head first.
    position: int
    body: bytes
    #: Message properties (content type, correlation id...), without headers.
    properties: Mapping[str, Any]
    headers: Mapping[str, Any]

    @property
    def task_id(self) -> str:
        return str(
            self.headers.get(TASK_ID) or self.headers.get("id") or self.properties.get("correlation_id") or ""
        )

    @property
    def task_name(self) -> str:
        return str(self.headers.get(TASK_NAME) or self.headers.get("task") or "")

    @property
    def error_class(self) -> str:
        """``x-error-class``, else the class of the broker's reason (see :func:`broker_error_class`)."""
        if self.headers.get(ERROR_CLASS):
            return str(self.headers[ERROR_CLASS])
        reason = broker_death_reason(self.headers)
        return broker_error_class(reason) if reason is not None else ""

    @property
    def error_type(self) -> str:
        """``x-error-type``, else ``x-death:<reason>`` for a letter the broker dead-lettered."""
        if self.headers.get(ERROR_TYPE):
            return str(self.headers[ERROR_TYPE])
        reason = broker_death_reason(self.headers)
        return f"x-death:{reason}" if reason is not None else ""

    @property
    def error_message(self) -> str:
        return str(self.headers.get(ERROR_MESSAGE) or "")

    @property
    def traceback(self) -> str:
        return str(self.headers.get(ERROR_TRACEBACK) or "")

    @property
    def replay_count(self) -> int:
        return header_count(self.headers.get(REPLAY_COUNT))

    @property
    def dead_lettered_at(self) -> datetime | None:
        """When it last entered a DLQ (see :func:`dead_lettered_at`)."""
        return dead_lettered_at(self.headers)

    @property
    def group(self) -> str:
        return group_id(self.task_name, self.error_type)

    def original_queue(self, default: str) -> str:
        return str(self.headers.get(ORIGINAL_QUEUE) or default)


def header_count(value: Any) -> int:
    """A counter header's value as a non-negative int (0 when missing or malformed)."""
    try:
        return max(int(value), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def broker_death_reason(headers: Mapping[str, Any]) -> str | None:
    """Why the broker last dead-lettered the message, or None if it never did.

    RabbitMQ's own ``x-death`` (latest entry) comes first; a copy the platform
    published after a broker dead-lettering carries ``x-broker-death-reason``
    instead.
    """
    death = broker_death(headers)
    if death is not None:
        return death.reason
    reason = headers.get(BROKER_DEATH_REASON)
    return str(reason) if reason else None


def broker_error_class(reason: str) -> str:
    """The error class of a broker dead-lettering for ``reason`` (``delivery_limit`` -> ``poison``...)."""
    return BROKER_ERROR_CLASSES.get(reason, UNKNOWN_BROKER_ERROR_CLASS)


def parse_time(value: Any) -> datetime | None:
    """A header time (a datetime or ISO 8601 text) as an aware datetime (UTC when naive), or None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def dead_lettered_at(headers: Mapping[str, Any]) -> datetime | None:
    """The latest of ``x-last-failed-at``, the latest ``x-death`` time and ``x-broker-death-at``, or None."""
    death = broker_death(headers)
    times = [
        parse_time(headers.get(LAST_FAILED_AT)),
        parse_time(death.at if death is not None else None),
        parse_time(headers.get(BROKER_DEATH_AT)),
    ]
    known = [moment for moment in times if moment is not None]
    return max(known) if known else None


def group_id(task_name: str, error_type: str) -> str:
    """A short stable id for the error group (task, error type): 8 hex digits."""
    return hashlib.sha1(f"{task_name}\0{error_type}".encode()).hexdigest()[:8]
