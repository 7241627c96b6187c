"""Inspect and replay dead-letter queues (no CLI, no HTTP here).

Three jobs, kept apart:

- **Browse** without side effects: on one channel, ``basic_get`` (no ack) every
  message of ``<queue>.dlq``, then close the channel; RabbitMQ requeues every
  unacked message *in its original position* (classic queues keep publication
  order across requeues, https://www.rabbitmq.com/docs/confirms#consumer-nacks-requeue).
  DLQs are classic queues (config.topology), so this costs no delivery-limit
  budget. The only trace is the ``redelivered`` flag.
- **Group and count**: pure functions over header dicts (:func:`error_groups`,
  :func:`hourly_trend`, :func:`dlq_stats`), like a failed-message group: same
  task and same error type.
- **Replay**: one message at a time, ``basic_get`` from the head, publish a copy
  (body byte for byte, same properties, same task id, ``x-replay-count`` + 1,
  retry counters reset so it gets a fresh retry budget) to its original queue
  through the default exchange, wait for the broker's confirm, and only then
  ack the dead letter. A crash between confirm and ack duplicates that one
  message; nothing is lost. Non-matching messages stay unacked on the channel
  until the end and are requeued by closing it, so they keep their order.

The default exchange delivers to exactly the named queue: republishing to the
original exchange would, for an event, deliver it to every subscriber again.

While replaying, a temporary exclusive queue bound to the dead-letter exchange
with the work queue's routing key receives a copy of every new dead letter of
that queue; replayed task ids seen there count as re-failures, and the replay
stops when they exceed ``max_refail_ratio`` of what was replayed (with at
least :data:`MIN_REFAIL_SAMPLE` to judge by).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import amqp
from amqp.exceptions import NotFound

from config.topology import DEAD_LETTER_EXCHANGE, dead_letter_queue
from workers.delivery.headers import (
    CELERY_RETRIES,
    DELIVERY_COUNT,
    ERROR_CLASS,
    ERROR_MESSAGE,
    ERROR_TRACEBACK,
    ERROR_TYPE,
    LAST_FAILED_AT,
    ORIGINAL_QUEUE,
    REPLAY_COUNT,
    RETRY_COUNT,
    TASK_ID,
    TASK_NAME,
)
from workers.ops.text import age_text, json_safe  # noqa: F401 - re-exported until the split

if TYPE_CHECKING:
    from kombu import Connection

logger = logging.getLogger(__name__)

#: RabbitMQ's own dead-letter history header (broker-side dead-lettering).
X_DEATH = "x-death"
#: Replayed messages that may re-fail before the ratio is judged at all.
MIN_REFAIL_SAMPLE = 10
#: File in the run folder that records every replay and purge, one JSON object a line.
AUDIT_FILE = "dlq-audit.jsonl"
#: Properties not carried to a replayed copy: a stale TTL would expire it, and
#: RabbitMQ refuses a ``user_id`` that is not the publishing user.
DROPPED_PROPERTIES = frozenset({"application_headers", "expiration", "user_id"})
#: Hours shown by :func:`hourly_trend`.
TREND_HOURS = 24


class UnknownQueue(LookupError):
    """The queue (or its DLQ) does not exist on the broker."""


class ReplayError(RuntimeError):
    """A replay could not go on (the broker refused or did not confirm a publish)."""


# --------------------------------------------------------------------------- model


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
        if self.headers.get(ERROR_CLASS):
            return str(self.headers[ERROR_CLASS])
        return "poison" if _deaths(self.headers) else ""

    @property
    def error_type(self) -> str:
        if self.headers.get(ERROR_TYPE):
            return str(self.headers[ERROR_TYPE])
        deaths = _deaths(self.headers)
        return f"x-death:{deaths[0].get('reason', '?')}" if deaths else ""

    @property
    def error_message(self) -> str:
        return str(self.headers.get(ERROR_MESSAGE) or "")

    @property
    def traceback(self) -> str:
        return str(self.headers.get(ERROR_TRACEBACK) or "")

    @property
    def replay_count(self) -> int:
        return _int(self.headers.get(REPLAY_COUNT))

    @property
    def dead_lettered_at(self) -> datetime | None:
        """When it last entered a DLQ: ``x-last-failed-at`` or RabbitMQ's ``x-death`` time."""
        return dead_lettered_at(self.headers)

    @property
    def group(self) -> str:
        return group_id(self.task_name, self.error_type)

    def original_queue(self, default: str) -> str:
        return str(self.headers.get(ORIGINAL_QUEUE) or default)


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _deaths(headers: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    deaths = headers.get(X_DEATH)
    return [d for d in deaths if isinstance(d, Mapping)] if isinstance(deaths, list) else []


def _parse_time(value: Any) -> datetime | None:
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
    """The latest of ``x-last-failed-at`` and the ``x-death`` times, or None."""
    times = [_parse_time(headers.get(LAST_FAILED_AT))]
    times += [_parse_time(death.get("time")) for death in _deaths(headers)]
    known = [moment for moment in times if moment is not None]
    return max(known) if known else None


def group_id(task_name: str, error_type: str) -> str:
    """A short stable id for the error group (task, error type): 8 hex digits."""
    return hashlib.sha1(f"{task_name}\0{error_type}".encode()).hexdigest()[:8]


# ------------------------------------------------------------------ grouping, stats


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


# ------------------------------------------------------------------------ filters


@dataclass(frozen=True)
class Filter:
    """Which dead letters a replay takes; empty criteria match everything.

    Criteria of different kinds must all hold; several values of one kind are
    alternatives (``ids=("a", "b")`` takes either).
    """

    ids: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    error_classes: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    #: Only letters that entered the DLQ at least this long ago.
    older_than: timedelta | None = None
    #: Only letters that entered the DLQ at most this long ago.
    newer_than: timedelta | None = None

    def matches(self, letter: DeadLetterMessage, now: datetime) -> bool:
        if self.ids and letter.task_id not in self.ids:
            return False
        if self.groups and letter.group not in self.groups:
            return False
        if self.tasks and letter.task_name not in self.tasks:
            return False
        if self.error_classes and letter.error_class not in self.error_classes:
            return False
        if self.error_types and letter.error_type not in self.error_types:
            return False
        if self.older_than is not None or self.newer_than is not None:
            moment = letter.dead_lettered_at
            if moment is None:
                return False
            age = now - moment
            if self.older_than is not None and age < self.older_than:
                return False
            if self.newer_than is not None and age > self.newer_than:
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The criteria that are set, JSON-ready (for the audit log)."""
        described: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if isinstance(value, timedelta):
                described[name] = value.total_seconds()
            elif value:
                described[name] = list(value)
        return described


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` (or plain seconds) as a timedelta.

    Raises:
        ValueError: not a non-negative number with an optional unit s/m/h/d.
    """
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _DURATION_UNITS else "s"
    number = raw[:-1] if raw[-1:] in _DURATION_UNITS else raw
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return timedelta(seconds=value * _DURATION_UNITS[unit])


# ------------------------------------------------------------------------ browsing


def _channel(connection: Connection) -> amqp.Channel:
    connection.ensure_connection(max_retries=1)
    return connection.channel()


def _close(channel: amqp.Channel) -> None:
    try:
        channel.close()
    except Exception:  # noqa: BLE001 - a channel closed by an error is already gone
        pass


def dlq_depth(connection: Connection, queue: str) -> int:
    """Ready messages in ``queue``'s DLQ.

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    channel = _channel(connection)
    try:
        _, count, _ = channel.queue_declare(dead_letter_queue(queue), passive=True)
    except NotFound:
        raise UnknownQueue(f"dead-letter queue {dead_letter_queue(queue)!r} does not exist") from None
    _close(channel)
    return count


def _letter(position: int, message: amqp.Message) -> DeadLetterMessage:
    properties = {k: v for k, v in message.properties.items() if k != "application_headers"}
    headers = dict(message.properties.get("application_headers") or {})
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    return DeadLetterMessage(position, body, properties, headers)


def iter_dead_letters(
    connection: Connection, queue: str, limit: int | None = None
) -> Iterator[DeadLetterMessage]:
    """Browse ``queue``'s DLQ head first, without consuming anything.

    Every message is fetched unacked on one channel; closing the channel (when
    the iteration ends or is abandoned) puts all of them back in their places.

    Args:
        connection: a kombu connection to the broker.
        queue: the work queue whose DLQ to browse (``orders`` for ``orders.dlq``).
        limit: stop after this many messages (all by default).

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    name = dead_letter_queue(queue)
    channel = _channel(connection)
    try:
        try:
            _, count, _ = channel.queue_declare(name, passive=True)
        except NotFound:
            raise UnknownQueue(f"dead-letter queue {name!r} does not exist") from None
        # Only the messages there now: new arrivals at the tail are not waited for.
        wanted = count if limit is None else min(count, limit)
        for position in range(wanted):
            message = channel.basic_get(name, no_ack=False)
            if message is None:
                return
            yield _letter(position, message)
    finally:
        _close(channel)


def browse(connection: Connection, queue: str, limit: int | None = None) -> list[DeadLetterMessage]:
    """All (or the first ``limit``) dead letters of ``queue``, left where they are."""
    return list(iter_dead_letters(connection, queue, limit))


def purge(connection: Connection, queue: str) -> int:
    """Delete every message of ``queue``'s DLQ.

    Returns:
        How many messages were deleted.

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    channel = _channel(connection)
    try:
        try:
            channel.queue_declare(dead_letter_queue(queue), passive=True)
        except NotFound:
            raise UnknownQueue(f"dead-letter queue {dead_letter_queue(queue)!r} does not exist") from None
        return channel.queue_purge(dead_letter_queue(queue)) or 0
    finally:
        _close(channel)


# -------------------------------------------------------------------------- replay


def replay_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers of a replayed copy: a fresh retry budget and one more replay.

    The task id and every other header stay, so idempotency still holds and the
    history of the last failure is kept until the next one overwrites it.
    """
    replayed = dict(headers)
    replayed.pop(DELIVERY_COUNT, None)
    replayed[RETRY_COUNT] = 0
    if CELERY_RETRIES in replayed:
        replayed[CELERY_RETRIES] = 0
    replayed[REPLAY_COUNT] = _int(headers.get(REPLAY_COUNT)) + 1
    return replayed


@dataclass
class ReplayProgress:
    """Where a replay stands (passed to the progress callback after every message)."""

    total: int
    scanned: int = 0
    matched: int = 0
    replayed: int = 0
    refailed: int = 0


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


def refail_limit_reached(
    refailed: int, replayed: int, max_ratio: float, min_sample: int = MIN_REFAIL_SAMPLE
) -> bool:
    """Whether re-failures exceed ``max_ratio`` of the replayed messages.

    Judged against at least ``min_sample`` messages, so the first failure of a
    replay does not count as 100%.
    """
    return refailed > max_ratio * max(replayed, min_sample)


class _RefailWatch:
    """A temporary queue that sees every new dead letter of one work queue."""

    def __init__(self, connection: Connection, queue: str) -> None:
        self.channel = _channel(connection)
        name, _, _ = self.channel.queue_declare(
            "",
            exclusive=True,
            auto_delete=True,
            arguments={"x-queue-type": "classic", "x-max-length": 100_000},
        )
        self.channel.queue_bind(name, DEAD_LETTER_EXCHANGE, routing_key=queue)
        self.name = name

    def seen(self, task_ids: set[str]) -> int:
        """How many new dead letters (since the last call) carry one of ``task_ids``."""
        count = 0
        while (message := self.channel.basic_get(self.name, no_ack=True)) is not None:
            if _letter(0, message).task_id in task_ids:
                count += 1
        return count

    def close(self) -> None:
        _close(self.channel)


def replay(
    connection: Connection,
    queue: str,
    selection: Filter | None = None,
    *,
    dry_run: bool = False,
    rate: float | None = None,
    max_refail_ratio: float = 0.5,
    min_refail_sample: int = MIN_REFAIL_SAMPLE,
    confirm_timeout: float = 5.0,
    progress: Callable[[ReplayProgress], None] | None = None,
    now: datetime | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Move the matching dead letters of ``queue`` back to their original queue.

    Args:
        connection: a kombu connection to the broker.
        queue: the work queue (its DLQ is ``<queue>.dlq``).
        selection: which letters; all by default.
        dry_run: only find and count the matches; nothing is published or acked.
        rate: at most this many messages per second (unlimited by default).
        max_refail_ratio: stop when more than this share of the replayed
            messages was dead-lettered again (judged on at least
            ``min_refail_sample`` messages).
        min_refail_sample: see ``max_refail_ratio``.
        confirm_timeout: seconds to wait for each publish confirm.
        progress: called after every scanned message.
        now: the time age filters are measured from (now by default).

    Returns:
        What happened; ``stopped`` says why it ended early, if it did.

    Raises:
        UnknownQueue: the DLQ or the original queue does not exist.
    """
    selection = selection or Filter()
    now = now or datetime.now(UTC)
    name = dead_letter_queue(queue)
    started = clock()
    channel = _channel(connection)
    watch: _RefailWatch | None = None
    replayed_ids: set[str] = set()
    result = ReplayResult(queue, dry_run, 0, 0, 0, 0, 0, None, 0.0)
    try:
        try:
            _, total, _ = channel.queue_declare(name, passive=True)
        except NotFound:
            raise UnknownQueue(f"dead-letter queue {name!r} does not exist") from None
        result.total = total
        state = ReplayProgress(total)
        if not dry_run:
            channel.confirm_select()
            watch = _RefailWatch(connection, queue)
        known_targets: set[str] = set()
        for _ in range(total):
            message = channel.basic_get(name, no_ack=False)
            if message is None:
                break
            letter = _letter(result.scanned, message)
            result.scanned += 1
            if selection.matches(letter, now):
                result.matched += 1
                result.groups[letter.group] = result.groups.get(letter.group, 0) + 1
                if dry_run:
                    result.task_ids.append(letter.task_id)
                else:
                    target = letter.original_queue(queue)
                    if target not in known_targets:
                        _require_queue(connection, target)
                        known_targets.add(target)
                    if rate:
                        delay = started + result.replayed / rate - clock()
                        if delay > 0:
                            sleep(delay)
                    try:
                        _republish(channel, message, target, confirm_timeout)
                    except Exception as exc:  # noqa: BLE001 - the letter stays; report why
                        result.stopped, result.error = "publish-failed", f"{type(exc).__name__}: {exc}"
                        logger.error("replay of %s stopped: publish to %s failed: %r", name, target, exc)
                        break
                    # Confirmed: only now may the dead letter go.
                    channel.basic_ack(message.delivery_tag)
                    result.replayed += 1
                    result.task_ids.append(letter.task_id)
                    replayed_ids.add(letter.task_id)
            if watch is not None and (result.scanned % 10 == 0 or result.scanned == total):
                result.refailed += watch.seen(replayed_ids)
                if refail_limit_reached(
                    result.refailed, result.replayed, max_refail_ratio, min_refail_sample
                ):
                    result.stopped = "refailures"
                    logger.warning(
                        "replay of %s stopped: %d of %d replayed messages were dead-lettered again",
                        name,
                        result.refailed,
                        result.replayed,
                    )
                    break
            if progress is not None:
                state.scanned, state.matched = result.scanned, result.matched
                state.replayed, state.refailed = result.replayed, result.refailed
                progress(state)
        if watch is not None and result.stopped is None:
            result.refailed += watch.seen(replayed_ids)
    finally:
        if watch is not None:
            watch.close()
        # Requeues the letters that were looked at but not replayed, in their places.
        _close(channel)
        result.elapsed = clock() - started
    return result


def _require_queue(connection: Connection, queue: str) -> None:
    channel = _channel(connection)
    try:
        channel.queue_declare(queue, passive=True)
    except NotFound:
        raise UnknownQueue(
            f"the original queue {queue!r} does not exist; declare the topology first"
        ) from None
    _close(channel)


def _republish(channel: amqp.Channel, message: amqp.Message, queue: str, confirm_timeout: float) -> None:
    properties = {k: v for k, v in message.properties.items() if k not in DROPPED_PROPERTIES}
    headers = replay_headers(message.properties.get("application_headers") or {})
    copy = amqp.Message(message.body, application_headers=headers, **properties)
    channel.basic_publish_confirm(
        copy, exchange="", routing_key=queue, mandatory=True, confirm_timeout=confirm_timeout
    )


# --------------------------------------------------------------- export and audit


def letter_record(letter: DeadLetterMessage, traceback_limit: int | None = None) -> dict[str, Any]:
    """A JSON-ready dict of ``letter``: body as UTF-8 text, or base64 when it is not UTF-8."""
    try:
        body, encoding = letter.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(letter.body).decode(), "base64"
    headers = json_safe(letter.headers)
    if traceback_limit is not None and ERROR_TRACEBACK in headers:
        headers[ERROR_TRACEBACK] = str(headers[ERROR_TRACEBACK])[-traceback_limit:]
    at = letter.dead_lettered_at
    return {
        "position": letter.position,
        "task_id": letter.task_id,
        "task_name": letter.task_name,
        "error_class": letter.error_class,
        "error_type": letter.error_type,
        "group": letter.group,
        "dead_lettered_at": at.isoformat() if at else None,
        "replay_count": letter.replay_count,
        "properties": json_safe(letter.properties),
        "headers": headers,
        "body": body,
        "body_encoding": encoding,
    }


def export_lines(letters: Iterable[DeadLetterMessage]) -> Iterator[str]:
    """One JSON line per dead letter (see :func:`letter_record`)."""
    for letter in letters:
        yield json.dumps(letter_record(letter), sort_keys=True)


def operator() -> str:
    """Who runs this process: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def audit(run_dir: str | Path, action: str, queue: str, who: str, **details: Any) -> dict[str, Any]:
    """Record who did what, when, in ``<run_dir>/dlq-audit.jsonl`` and in the log.

    Returns:
        The record written.
    """
    record = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "who": who,
        "action": action,
        "queue": queue,
        **json_safe(details),
    }
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / AUDIT_FILE, "a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")
    logger.info("dlq audit: %s", json.dumps(record, sort_keys=True))
    return record


#: Most dead letters read for a summary (metrics, alerts, pages).
SUMMARY_SCAN_LIMIT = 10_000


def summarize(
    connection: Connection, queue: str, now: datetime | None = None, limit: int = SUMMARY_SCAN_LIMIT
) -> DlqStats:
    """Browse the head of ``queue``'s DLQ (at most ``limit`` letters) and compute its stats.

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    return dlq_stats(queue, browse(connection, queue, limit=limit), now or datetime.now(UTC))
