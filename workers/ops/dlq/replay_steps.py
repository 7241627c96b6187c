"""The pure steps of a replay, what each returns, and what a replay reports (no I/O).

:func:`workers.ops.dlq.replaying.replay` runs these in a loop; each letter's
outcome is one of :class:`Skipped`, :class:`Counted`, :class:`Replayed` or
:class:`Stop`, and :func:`tally` counts it into the :class:`ReplayResult`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import amqp

from workers.broker import message_headers
from workers.delivery.headers import (
    CELERY_RETRIES,
    DELIVERY_COUNT,
    REPLAY_COUNT,
    RETRY_COUNT,
    without_broker_history,
)
from workers.ops.dlq.filters import Filter
from workers.ops.dlq.letters import DeadLetterMessage, header_count

#: Properties not carried to a replayed copy: a stale TTL would expire it, and
#: RabbitMQ refuses a ``user_id`` that is not the publishing user.
DROPPED_PROPERTIES = frozenset({"application_headers", "expiration", "user_id"})
#: ``ReplayResult.stopped``: too many replayed messages were dead-lettered again.
STOP_REFAILURES = "refailures"
#: ``ReplayResult.stopped``: the broker refused or did not confirm a publish.
STOP_PUBLISH_FAILED = "publish-failed"


# ------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Skipped:
    """The letter does not match: left unacked, so closing the channel puts it back in its place."""


@dataclass(frozen=True)
class Counted:
    """The letter matches, in a dry run: counted; nothing is published or acked."""


@dataclass(frozen=True)
class Move:
    """The letter matches: copy it to ``target`` (its original queue)."""

    target: str


@dataclass(frozen=True)
class Replayed:
    """The copy reached ``target`` (confirmed by the broker), then the dead letter was acked."""

    target: str


@dataclass(frozen=True)
class Stop:
    """The replay ends here, for ``reason`` (:data:`STOP_REFAILURES` or :data:`STOP_PUBLISH_FAILED`)."""

    reason: str
    error: str = ""


#: What became of one scanned letter.
Outcome = Skipped | Counted | Replayed | Stop


@dataclass
class ReplayProgress:
    """Where a replay stands (passed to the progress callback after every message)."""

    total: int
    scanned: int = 0
    matched: int = 0
    replayed: int = 0
    refailed: int = 0

    def follow(self, result: ReplayResult) -> ReplayProgress:
        """This progress, brought up to ``result``'s counts."""
        self.scanned, self.matched = result.scanned, result.matched
        self.replayed, self.refailed = result.replayed, result.refailed
        return self


@dataclass
class ReplayResult:
    """What a replay did."""

    queue: str
    dry_run: bool
    total: int
    scanned: int
    matched: int
    replayed: int
    #: Replayed messages seen dead-lettered again while the replay ran.
    refailed: int
    #: Why it stopped early: ``"refailures"``, ``"publish-failed"``, or None.
    stopped: str | None
    elapsed: float
    #: Task ids replayed (or, in a dry run, that would be).
    task_ids: list[str] = field(default_factory=list)
    #: Per error group id: how many matched.
    groups: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def rate(self) -> float:
        return self.replayed / self.elapsed if self.elapsed > 0 else 0.0


# ------------------------------------------------------------- pure steps


def replay_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers of a replayed copy: a fresh retry budget and one more replay.

    The task id and every other header stay, so idempotency still holds and the
    history of the last failure is kept until the next one overwrites it. The
    broker's ``x-death`` history does not: RabbitMQ before 4.0 would read it as
    a dead-letter cycle on the copy's next delay-queue expiry and drop the
    message; its gist stays as ``x-broker-death-*``
    (:func:`workers.delivery.headers.without_broker_history`).
    """
    replayed = without_broker_history(headers)
    replayed.pop(DELIVERY_COUNT, None)
    replayed[RETRY_COUNT] = 0
    if CELERY_RETRIES in replayed:
        replayed[CELERY_RETRIES] = 0
    replayed[REPLAY_COUNT] = header_count(headers.get(REPLAY_COUNT)) + 1
    return replayed


def replay_copy(message: amqp.Message) -> amqp.Message:
    """The copy of dead letter ``message`` to publish: same body and properties, :func:`replay_headers`."""
    properties = {k: v for k, v in message.properties.items() if k not in DROPPED_PROPERTIES}
    return amqp.Message(
        message.body, application_headers=replay_headers(message_headers(message)), **properties
    )


def select(
    letter: DeadLetterMessage, selection: Filter, now: datetime, *, dry_run: bool, queue: str
) -> Skipped | Counted | Move:
    """What to do with ``letter`` of ``queue``'s DLQ: leave it, count it (dry run), or move it."""
    if not selection.matches(letter, now):
        return Skipped()
    if dry_run:
        return Counted()
    return Move(letter.original_queue(queue))


def pacing_delay(started: float, replayed: int, rate: float | None, now: float) -> float:
    """Seconds to wait before the next publish so that at most ``rate`` go out per second from ``started``."""
    if not rate:
        return 0.0
    return max(started + replayed / rate - now, 0.0)


def tally(result: ReplayResult, letter: DeadLetterMessage, outcome: Outcome) -> None:
    """Count one scanned letter's ``outcome`` into ``result``."""
    result.scanned += 1
    if isinstance(outcome, Skipped):
        return
    result.matched += 1
    result.groups[letter.group] = result.groups.get(letter.group, 0) + 1
    if isinstance(outcome, Replayed):
        result.replayed += 1
    if isinstance(outcome, Counted | Replayed):
        result.task_ids.append(letter.task_id)
    if isinstance(outcome, Stop):
        result.stopped, result.error = outcome.reason, outcome.error
