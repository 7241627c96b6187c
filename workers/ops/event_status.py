"""Where one event stands at each subscriber: processed, retrying, dead-lettered, pending.

For every subscription, in this order:

- **processed**: the idempotency store has ``<service>:<event id>`` as completed;
- **dead-lettered**: a message of that event is in ``<queue>.dlq`` (with its error);
- **retrying**: a message of that event waits in one of ``<queue>.retry.N``;
- **pending**: none of these: waiting in the queue, being handled right now, or
  (if the subscriber came later than the event) never delivered; a live quorum
  queue is not browsed, since that would count as a delivery.

Queues are browsed by getting messages without acking them and closing the
channel, which returns them all (at most ``limit`` per queue). DLQs are
classic queues, so this leaves no trace; a delay queue's messages are
returned to it with their expiry unchanged.

Which ids can be looked up (:func:`event_id_problem`, :func:`unknown_id_problem`):
CloudEvents allows any non-empty string, and a foreign producer may choose
one, so only what no producer sends is refused before looking (empty, control
characters, longer than :data:`MAX_EVENT_ID`). The platform's own ids are
UUIDs (``publish()`` makes them); an id that is not one and that no subscriber
has processed, retried or dead-lettered is a mistake (a task id, an order id,
a typo), so it is refused after looking instead of shown as "pending"
everywhere. A UUID nobody has is unknown: pending, as the rows say.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import amqp

from config.app import platform_config
from config.topology import dead_letter_queue
from workers.broker import (
    SCAN_LIMIT,
    QueueMissing,
    amqp_connection,
    browse_messages,
    close_quietly,
    message_headers,
)
from workers.delivery.headers import (
    ERROR_CLASS,
    ERROR_MESSAGE,
    ERROR_TYPE,
    LAST_FAILED_AT,
    RETRY_COUNT,
    TASK_ID,
    retry_count,
)
from workers.delivery.idempotency import open_store
from workers.events.envelope import read_attributes
from workers.events.receive import handler_task_id

if TYPE_CHECKING:
    from celery import Celery

    from config.subscriptions import Subscription


#: Longest event id looked up (CloudEvents ids are short; UUIDs are 36).
MAX_EVENT_ID = 256


def event_id_problem(event_id: str | None) -> str | None:
    """Why ``event_id`` can't be looked up at all, or None if it can.

    Only what no producer sends is refused here: nothing, invalid UTF-8 (None),
    control characters, or more than :data:`MAX_EVENT_ID` characters.
    """
    if event_id is None:
        return "the event id is not valid UTF-8"
    if not event_id.strip():
        return "the event id is empty"
    if len(event_id) > MAX_EVENT_ID:
        return f"the event id is {len(event_id)} characters long; ids are at most {MAX_EVENT_ID}"
    if not event_id.isprintable():
        return "the event id contains control characters (a newline, a tab...)"
    return None


def is_platform_event_id(event_id: str) -> bool:
    """Whether ``event_id`` has the form of the ids the platform makes (a UUID, 8-4-4-4-12 hex)."""
    try:
        return str(uuid.UUID(event_id)) == event_id.lower()
    except ValueError:
        return False


def unknown_id_problem(event_id: str, rows: list[SubscriberStatus]) -> str | None:
    """Why a looked-up ``event_id`` is malformed after all, or None (see the module doc).

    Returns a sentence when the id is not a UUID and every subscriber has it
    pending, i.e. none has processed, retried or dead-lettered it.
    """
    if is_platform_event_id(event_id) or not rows or any(row.state != "pending" for row in rows):
        return None
    return (
        f"{event_id!r} is not an event id: the platform's event ids are UUIDs (publish() returns them), "
        "and no subscriber has processed, retried or dead-lettered an event with this id"
    )


@dataclass(frozen=True)
class SubscriberStatus:
    """One subscriber's view of one event.

    ``detail`` is the one-line summary the CLI prints; the fields after it hold
    the same facts one by one, for pages that lay them out (empty or None when
    they don't apply to the state).
    """

    service: str
    queue: str
    state: str
    detail: str = ""
    #: The handler's task id, ``<service>:<event id>``.
    task_id: str = ""
    #: Retries so far (``x-retry-count``): retrying and dead-lettered only.
    retry_count: int | None = None
    #: Retrying: the delay queue the next attempt waits in, its tier (1-based) and the tier count.
    retry_queue: str = ""
    retry_tier: int | None = None
    retry_tiers: int | None = None
    #: Retrying (last error) and dead-lettered: ``transient``/``permanent``/``unknown``, type, message.
    error_class: str = ""
    error_type: str = ""
    error_message: str = ""
    #: Dead-lettered: when the last attempt failed (ISO 8601).
    failed_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(headers: dict[str, Any], name: str, default: str = "") -> str:
    value = headers.get(name)
    return default if value is None else str(value)


def _matches(message: amqp.Message, event_id: str, task_id: str) -> bool:
    headers = message_headers(message)
    return read_attributes(headers).get("id") == event_id or headers.get(TASK_ID) == task_id


def _browse(connection: amqp.Connection, queue: str, event_id: str, task_id: str, limit: int) -> Any:
    """The first message of ``event_id`` in ``queue``, or None; every message is given back."""
    try:
        return next(
            (m for m in browse_messages(connection, queue, limit) if _matches(m, event_id, task_id)), None
        )
    except QueueMissing:
        return None


def _dead_lettered(subscription: Subscription, task_id: str, dead: amqp.Message) -> SubscriberStatus:
    headers = message_headers(dead)
    error_class = _text(headers, ERROR_CLASS, "?")
    error_type = _text(headers, ERROR_TYPE, "?")
    error_message = _text(headers, ERROR_MESSAGE)
    failed_at = _text(headers, LAST_FAILED_AT, "?")
    retries = retry_count(headers)
    return SubscriberStatus(
        subscription.service,
        subscription.queue,
        "dead-lettered",
        f"{error_class}: {error_type}: {error_message} (retries {retries}, at {failed_at})",
        task_id,
        retry_count=retries,
        error_class=error_class,
        error_type=error_type,
        error_message=error_message,
        failed_at=failed_at,
    )


def _retrying(
    subscription: Subscription, task_id: str, message: amqp.Message, retry: str, tier: int, tiers: int
) -> SubscriberStatus:
    headers = message_headers(message)
    error_type = _text(headers, ERROR_TYPE, "?")
    error_message = _text(headers, ERROR_MESSAGE)
    return SubscriberStatus(
        subscription.service,
        subscription.queue,
        "retrying",
        f"in {retry}, retry {_text(headers, RETRY_COUNT, '?')}, last error {error_type}: {error_message}",
        task_id,
        retry_count=retry_count(headers),
        retry_queue=retry,
        retry_tier=tier,
        retry_tiers=tiers,
        error_class=_text(headers, ERROR_CLASS, "?"),
        error_type=error_type,
        error_message=error_message,
    )


def event_status(app: Celery, event_id: str, limit: int = SCAN_LIMIT) -> list[SubscriberStatus]:
    """Where ``event_id`` stands at each subscriber of ``app``'s subscriptions.

    Raises:
        PublishError: the broker can't be reached.
    """
    settings = platform_config(app).settings
    topology = platform_config(app).topology
    store = open_store(settings.state_url)
    rows = []
    connection = amqp_connection(app.connection_for_write(), settings.publish_timeout)
    try:
        for subscription in platform_config(app).subscriptions:
            queue = subscription.queue
            task_id = handler_task_id(subscription.service, event_id)
            if store.is_completed(task_id):
                rows.append(
                    SubscriberStatus(subscription.service, queue, "processed", f"task {task_id}", task_id)
                )
                continue
            dead = _browse(connection, dead_letter_queue(queue), event_id, task_id, limit)
            if dead is not None:
                rows.append(_dead_lettered(subscription, task_id, dead))
                continue
            retrying = None
            tiers = topology[queue].retry_queues if queue in topology else ()
            for tier, retry in enumerate(tiers, start=1):
                message = _browse(connection, retry, event_id, task_id, limit)
                if message is not None:
                    retrying = _retrying(subscription, task_id, message, retry, tier, len(tiers))
                    break
            if retrying is not None:
                rows.append(retrying)
                continue
            rows.append(
                SubscriberStatus(
                    subscription.service, queue, "pending", "queued, in flight, or never delivered", task_id
                )
            )
    finally:
        close_quietly(connection)
    return rows
