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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import amqp

from config.topology import dead_letter_queue
from workers.events.envelope import read_attributes
from workers.events.receive import handler_task_id
from workers.idempotency import open_store
from workers.pipeline import close_quietly, connect

if TYPE_CHECKING:
    from celery import Celery

#: Most messages browsed per queue.
DEFAULT_LIMIT = 10_000


@dataclass(frozen=True)
class SubscriberStatus:
    """One subscriber's view of one event."""

    service: str
    queue: str
    state: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _matches(message: amqp.Message, event_id: str, task_id: str) -> bool:
    headers = message.properties.get("application_headers") or {}
    return read_attributes(headers).get("id") == event_id or headers.get("x-task-id") == task_id


def _browse(connection: amqp.Connection, queue: str, event_id: str, task_id: str, limit: int) -> Any:
    """The first message of ``event_id`` in ``queue``, or None; every message is returned."""
    channel = connection.channel()
    found = None
    try:
        for _ in range(limit):
            try:
                message = channel.basic_get(queue, no_ack=False)
            except amqp.exceptions.NotFound:
                return None
            if message is None:
                break
            if found is None and _matches(message, event_id, task_id):
                found = message
    finally:
        try:
            channel.close()  # unacked messages go back to their queue
        except Exception:  # noqa: BLE001 - a channel closed by an error is already gone
            pass
    return found


def event_status(app: Celery, event_id: str, limit: int = DEFAULT_LIMIT) -> list[SubscriberStatus]:
    """Where ``event_id`` stands at each subscriber of ``app``'s subscriptions.

    Raises:
        PublishError: the broker can't be reached.
    """
    settings = app.conf.platform_settings
    topology = app.conf.platform_topology
    store = open_store(settings.state_url)
    rows = []
    connection = connect(app)
    try:
        for subscription in app.conf.platform_subscriptions:
            queue = subscription.queue
            task_id = handler_task_id(subscription.service, event_id)
            if store.is_completed(task_id):
                rows.append(SubscriberStatus(subscription.service, queue, "processed", f"task {task_id}"))
                continue
            dead = _browse(connection, dead_letter_queue(queue), event_id, task_id, limit)
            if dead is not None:
                headers = dead.properties.get("application_headers") or {}
                detail = (
                    f"{headers.get('x-error-class', '?')}: {headers.get('x-error-type', '?')}: "
                    f"{headers.get('x-error-message', '')} (retries {headers.get('x-retry-count', 0)}, "
                    f"at {headers.get('x-last-failed-at', '?')})"
                )
                rows.append(SubscriberStatus(subscription.service, queue, "dead-lettered", detail))
                continue
            retrying = None
            if queue in topology:
                for retry in topology[queue].retry_queues:
                    message = _browse(connection, retry, event_id, task_id, limit)
                    if message is not None:
                        headers = message.properties.get("application_headers") or {}
                        retrying = (
                            f"in {retry}, retry {headers.get('x-retry-count', '?')}, last error "
                            f"{headers.get('x-error-type', '?')}: {headers.get('x-error-message', '')}"
                        )
                        break
            if retrying is not None:
                rows.append(SubscriberStatus(subscription.service, queue, "retrying", retrying))
                continue
            rows.append(
                SubscriberStatus(
                    subscription.service, queue, "pending", "queued, in flight, or never delivered"
                )
            )
    finally:
        close_quietly(connection)
    return rows
