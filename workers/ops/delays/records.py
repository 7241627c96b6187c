"""Delayed tasks as records: what a message waiting in a delay level says about itself (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config.topology import (
    DELAY_LEVELS,
    DELAY_RESOLUTION_MS,
    DELAYED_UNROUTABLE,
    delay_level,
)
from workers.delivery.delays import levels_waited
from workers.delivery.headers import (
    DELAY_DUE_AT,
    TASK_ID,
    TASK_NAME,
)

#: ``x-error-type`` of a delayed task an operator cancelled.
CANCELLED_ERROR_TYPE = "DelayCancelled"
#: The audit log's ``action`` of a cancel.
CANCEL_ACTION = "cancel"
#: Levels from the highest down: the way a message moves through them.
LEVELS_DOWN = tuple(range(DELAY_LEVELS - 1, -1, -1))


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
