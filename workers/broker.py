"""Talking to RabbitMQ about the topology: declare it, read queue depths."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amqp.exceptions import NotFound, PreconditionFailed

from config.topology import Topology

if TYPE_CHECKING:
    from kombu import Connection

logger = logging.getLogger(__name__)


class TopologyConflict(RuntimeError):
    """A queue or exchange exists with other arguments than the topology says."""


def declare_topology(connection: Connection, topology: Topology) -> int:
    """Declare every exchange and queue of ``topology`` (idempotent).

    Returns:
        How many queues were declared.

    Raises:
        TopologyConflict: RabbitMQ holds a queue of that name with other
            arguments (for example a classic queue where a quorum one is
            wanted); the message names it and says how to resolve it.
    """
    channel = connection.channel()
    try:
        for exchange in topology.exchanges():
            exchange(channel).declare()
        queues = topology.all_queues()
        for queue in queues:
            try:
                queue(channel).declare()
            except PreconditionFailed as exc:
                raise TopologyConflict(
                    f"queue {queue.name!r} already exists with different arguments ({exc.reply_text}); "
                    "drain and delete it, or change it with a RabbitMQ policy"
                ) from None
        return len(queues)
    finally:
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - a channel closed by an error is already gone
            pass


@dataclass(frozen=True)
class QueueDepth:
    """A queue's ready messages and consumers, from a passive declare."""

    name: str
    messages: int
    consumers: int


def queue_depth(connection: Connection, name: str) -> QueueDepth | None:
    """The depth of queue ``name``, or None if it does not exist."""
    channel = connection.channel()
    try:
        ok = channel.queue_declare(queue=name, passive=True)
    except NotFound:
        return None
    try:
        channel.close()
    except Exception:  # noqa: BLE001
        pass
    return QueueDepth(name, ok.message_count, ok.consumer_count)
