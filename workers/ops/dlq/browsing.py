"""Read a dead-letter queue without side effects, count it, purge it.

Browsing never consumes: :func:`workers.broker.browse_messages` fetches every
message of ``<queue>.dlq`` with ``basic_get`` (no ack) on one channel and then
closes it; RabbitMQ requeues every unacked message *in its original position*
(classic queues keep publication order across requeues,
https://www.rabbitmq.com/docs/confirms#consumer-nacks-requeue). DLQs are
classic queues (config.topology), so this costs no delivery-limit budget. The
only trace is the ``redelivered`` flag.

Every function here raises :class:`UnknownQueue` for a queue that does not
exist, with a message an operator can act on.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, cast

from config.topology import dead_letter_queue
from workers.broker import (
    QueueDepth,
    QueueMissing,
    browse_messages,
    close_quietly,
    message_headers,
    require_queue,
)
from workers.ops.dlq.letters import DeadLetterMessage

if TYPE_CHECKING:
    import amqp
    from kombu import Connection


class UnknownQueue(QueueMissing):
    """The queue (or its DLQ) does not exist on the broker."""


def require_dead_letter_queue(connection: Connection, queue: str) -> QueueDepth:
    """The depth of ``queue``'s DLQ (a passive declare on a channel of its own).

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    try:
        return require_queue(connection, dead_letter_queue(queue))
    except QueueMissing:
        raise UnknownQueue(f"dead-letter queue {dead_letter_queue(queue)!r} does not exist") from None


def require_original_queue(connection: Connection, queue: str) -> QueueDepth:
    """The depth of ``queue``, where replayed letters go.

    Raises:
        UnknownQueue: ``queue`` does not exist.
    """
    try:
        return require_queue(connection, queue)
    except QueueMissing:
        raise UnknownQueue(
            f"the original queue {queue!r} does not exist; declare the topology first"
        ) from None


def dead_letter(position: int, message: amqp.Message) -> DeadLetterMessage:
    """The dead letter of a raw py-amqp ``message`` fetched at ``position`` (0 is the head)."""
    properties = {k: v for k, v in message.properties.items() if k != "application_headers"}
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    return DeadLetterMessage(position, body, properties, message_headers(message))


def dlq_depth(connection: Connection, queue: str) -> int:
    """Ready messages in ``queue``'s DLQ.

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    return require_dead_letter_queue(connection, queue).messages


def iter_dead_letters(
    connection: Connection, queue: str, limit: int | None = None
) -> Iterator[DeadLetterMessage]:
    """Browse ``queue``'s DLQ head first, without consuming anything.

    Every message is fetched unacked on one channel; closing the channel (when
    the iteration ends or is abandoned) puts all of them back in their places.
    Only the messages there now are read: new arrivals at the tail are not
    waited for.

    Args:
        connection: a kombu connection to the broker.
        queue: the work queue whose DLQ to browse (``orders`` for ``orders.dlq``).
        limit: stop after this many messages (all by default).

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    name = dead_letter_queue(queue)
    # A generator: closing it closes the browsing channel now, not when it is collected.
    messages = cast(Generator["amqp.Message", None, None], browse_messages(connection, name, limit))
    try:
        for position, message in enumerate(messages):
            yield dead_letter(position, message)
    except QueueMissing:
        raise UnknownQueue(f"dead-letter queue {name!r} does not exist") from None
    finally:
        messages.close()


def browse(connection: Connection, queue: str, limit: int | None = None) -> list[DeadLetterMessage]:
    """All (or the first ``limit``) dead letters of ``queue``, left where they are.

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    return list(iter_dead_letters(connection, queue, limit))


def purge(connection: Connection, queue: str) -> int:
    """Delete every message of ``queue``'s DLQ.

    Returns:
        How many messages were deleted.

    Raises:
        UnknownQueue: the DLQ does not exist.
    """
    require_dead_letter_queue(connection, queue)
    channel = connection.channel()
    try:
        return channel.queue_purge(dead_letter_queue(queue)) or 0
    finally:
        close_quietly(channel)
