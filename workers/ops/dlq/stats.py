"""Group and count dead letters: error groups, the hourly trend, inflow, one DLQ's stats.

Pure functions over browsed letters (:func:`error_groups`, :func:`hourly_trend`,
:func:`dlq_stats`), like a failed-message group: same task and same error
type. :func:`summarize` is the one that reads the broker: it browses the head
of a DLQ (at most :data:`workers.broker.SCAN_LIMIT` letters) and computes them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from config.topology import dead_letter_queue
from workers.broker import SCAN_LIMIT
from workers.ops.dlq.browsing import browse
from workers.ops.dlq.letters import DeadLetterMessage, group_id

if TYPE_CHECKING:
    from kombu import Connection

#: Hours shown by :func:`hourly_trend`.
TREND_HOURS = 24


@dataclass(frozen=True)
class ErrorGroup:
    """Dead letters of one task failing with one error type."""

    id: str
    task_name: str
    error_type: str
    error_class: str
    count: int
    #: One error message of the group (the most recent).
    sample_message: str
    oldest: datetime | None
    newest: datetime | None


def error_groups(letters: Iterable[DeadLetterMessage]) -> list[ErrorGroup]:
    """Group dead letters by (task, error type); biggest group first."""
    members: dict[tuple[str, str], list[DeadLetterMessage]] = {}
    for letter in letters:
        members.setdefault((letter.task_name, letter.error_type), []).append(letter)
    groups = []
    for (task_name, error_type), items in members.items():
        times = [t for t in (item.dead_lettered_at for item in items) if t is not None]
        latest = max(items, key=lambda item: item.dead_lettered_at or datetime.min.replace(tzinfo=UTC))
        classes = Counter(item.error_class for item in items)
        groups.append(
            ErrorGroup(
                id=group_id(task_name, error_type),
                task_name=task_name,
                error_type=error_type,
                error_class=classes.most_common(1)[0][0],
                count=len(items),
                sample_message=latest.error_message,
                oldest=min(times) if times else None,
                newest=max(times) if times else None,
            )
        )
    return sorted(groups, key=lambda group: (-group.count, group.task_name, group.error_type))


def hourly_trend(
    letters: Iterable[DeadLetterMessage], now: datetime, hours: int = TREND_HOURS
) -> list[tuple[datetime, int]]:
    """Dead letters per hour (by when they entered the DLQ), oldest hour first.

    Returns:
        ``hours`` pairs (start of the UTC hour, count); the last is the current hour.
        Letters older than the window or without a time are not counted.
    """
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=n) for n in range(hours - 1, -1, -1)]
    counts: Counter[datetime] = Counter()
    for letter in letters:
        moment = letter.dead_lettered_at
        if moment is not None:
            counts[moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)] += 1
    return [(start, counts.get(start, 0)) for start in starts]


def inflow_last_hour(letters: Iterable[DeadLetterMessage], now: datetime) -> int:
    """Dead letters still in the DLQ that entered it within the hour before ``now``."""
    since = now - timedelta(hours=1)
    return sum(1 for letter in letters if (moment := letter.dead_lettered_at) is not None and moment > since)


@dataclass(frozen=True)
class DlqStats:
    """What an operator wants to know about one DLQ at a glance."""

    queue: str
    dead_letter_queue: str
    count: int
    oldest_at: datetime | None
    oldest_age_seconds: float | None
    inflow_last_hour: int
    groups: list[ErrorGroup]
    trend: list[tuple[datetime, int]]


def dlq_stats(queue: str, letters: Sequence[DeadLetterMessage], now: datetime) -> DlqStats:
    """Count, oldest, inflow, error groups and hourly trend of ``queue``'s DLQ (pure)."""
    times = [t for t in (letter.dead_lettered_at for letter in letters) if t is not None]
    oldest = min(times) if times else None
    return DlqStats(
        queue=queue,
        dead_letter_queue=dead_letter_queue(queue),
        count=len(letters),
        oldest_at=oldest,
        oldest_age_seconds=(now - oldest).total_seconds() if oldest else None,
        inflow_last_hour=inflow_last_hour(letters, now),
        groups=error_groups(letters),
        trend=hourly_trend(letters, now),
    )


def summarize(
    connection: Connection, queue: str, now: datetime | None = None, limit: int = SCAN_LIMIT
) -> DlqStats:
    """Browse the head of ``queue``'s DLQ (at most ``limit`` letters) and compute its stats.

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    return dlq_stats(queue, browse(connection, queue, limit=limit), now or datetime.now(UTC))
