"""The one declarative description of the RabbitMQ topology.

Everything the broker holds is derived here from the list of work queues in the
settings: each work queue ``<q>`` is a durable quorum queue bound to the tasks
exchange, with a ladder of delay queues ``<q>.retry.1..N`` and a dead-letter
queue ``<q>.dlq`` behind the dead-letter exchange. Names come only from the tiny
helpers below, so operators and code agree on them.

How a message moves (see DESIGN.md)::

    tasks exchange --q--> <q> (quorum) --worker fails, delay d--> <q>.retry.n
        ^                  |                                       | per-message TTL d
        +------------------+-- dead-lettered on expiry, key <q> ---+
                           |
                           +--permanent / exhausted / poison--> dlx --q--> <q>.dlq
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kombu import Exchange, Queue

#: Direct exchange every work queue is bound to, with its name as routing key.
TASKS_EXCHANGE = "platform.tasks"
#: Direct exchange every dead-letter queue is bound to, with the work queue's name.
DEAD_LETTER_EXCHANGE = "platform.dlx"


def retry_queue(queue: str, tier: int) -> str:
    """Name of the delay queue holding retry number ``tier`` of ``queue``."""
    return f"{queue}.retry.{tier}"


def dead_letter_queue(queue: str) -> str:
    """Name of the dead-letter queue of ``queue``."""
    return f"{queue}.dlq"


def work_queue_arguments(queue: str, delivery_limit: int) -> dict[str, object]:
    """Arguments of a work queue.

    The broker-side delivery limit is one more than the platform's: the worker
    itself dead-letters a message whose delivery count reached the limit, with
    full metadata, and the broker's limit only backs that up. At-least-once
    dead-lettering needs both the strategy and ``reject-publish`` overflow,
    otherwise RabbitMQ silently falls back to at-most-once
    (https://www.rabbitmq.com/docs/quorum-queues#dead-lettering).
    """
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit + 1,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def retry_queue_arguments(queue: str) -> dict[str, object]:
    """Arguments of a delay queue: expired messages go back to ``queue``.

    Each message carries its own TTL (``expiration``), so sub-second jitter is
    kept. RabbitMQ expires messages only from the head of a queue; every message
    in tier n waits ``base * 2**(n-1)`` plus at most ``jitter_max``, so none is
    late by more than ``jitter_max`` when tasks share the default schedule.
    """
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": TASKS_EXCHANGE,
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


#: Dead-letter queues are classic queues: browsing one (get, then requeue)
#: must not spend a delivery-limit budget the way a quorum queue would.
DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, object] = {"x-queue-type": "classic"}


@dataclass(frozen=True)
class WorkQueue:
    """One work queue and the fixed set of queues that serve it."""

    name: str
    retry_tiers: int
    delivery_limit: int

    @property
    def retry_queues(self) -> tuple[str, ...]:
        return tuple(retry_queue(self.name, n) for n in range(1, self.retry_tiers + 1))

    @property
    def dead_letter_queue(self) -> str:
        return dead_letter_queue(self.name)

    def retry_tier(self, retry_number: int) -> str:
        """The delay queue for retry ``retry_number`` (the last tier takes the rest)."""
        return retry_queue(self.name, max(1, min(retry_number, self.retry_tiers)))


@dataclass(frozen=True)
class Topology:
    """All queues and exchanges of one platform."""

    work_queues: tuple[WorkQueue, ...]

    @classmethod
    def build(cls, names: tuple[str, ...], retry_tiers: int, delivery_limit: int) -> Topology:
        tiers = max(retry_tiers, 1)
        return cls(tuple(WorkQueue(name, tiers, delivery_limit) for name in names))

    def __getitem__(self, name: str) -> WorkQueue:
        for queue in self.work_queues:
            if queue.name == name:
                return queue
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(queue.name == name for queue in self.work_queues)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(queue.name for queue in self.work_queues)

    def exchanges(self) -> tuple[Exchange, Exchange]:
        return (
            Exchange(TASKS_EXCHANGE, "direct", durable=True),
            Exchange(DEAD_LETTER_EXCHANGE, "direct", durable=True),
        )

    def consumer_queues(self) -> list[Queue]:
        """The kombu queues workers consume (Celery's ``task_queues``)."""
        tasks = Exchange(TASKS_EXCHANGE, "direct", durable=True)
        return [
            Queue(
                queue.name,
                tasks,
                routing_key=queue.name,
                durable=True,
                queue_arguments=work_queue_arguments(queue.name, queue.delivery_limit),
            )
            for queue in self.work_queues
        ]

    def support_queues(self) -> Iterator[Queue]:
        """Delay and dead-letter queues: declared, never consumed by workers."""
        dead_letters = Exchange(DEAD_LETTER_EXCHANGE, "direct", durable=True)
        for queue in self.work_queues:
            for name in queue.retry_queues:
                yield Queue(
                    name,
                    durable=True,
                    no_declare=False,
                    queue_arguments=retry_queue_arguments(queue.name),
                )
            yield Queue(
                queue.dead_letter_queue,
                dead_letters,
                routing_key=queue.name,
                durable=True,
                queue_arguments=DEAD_LETTER_QUEUE_ARGUMENTS,
            )

    def all_queues(self) -> list[Queue]:
        return [*self.consumer_queues(), *self.support_queues()]
