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

Delayed tasks (``countdown`` / ``eta``) wait in one shared set of delay
levels, never in a worker. Level L waits ``DELAY_RESOLUTION_MS * 2**L``; a
delay is written in binary in the routing key, highest level first, then the
target queue (``0.0.1.0.....1.orders``). Each level is a topic exchange and a
quorum queue of the same name with a fixed queue TTL: a message whose bit is 1
waits in the queue, then is dead-lettered on to the next level's exchange; a
bit of 0 passes straight on through an exchange-to-exchange binding. After
level 0 the delayed exchange routes it by the target queue's name::

    platform.delay.H --bit 1--> [queue platform.delay.H, TTL 10 ms * 2**H] --expired--+
         |  bit 0                                                                         |
         v                                                                                v
    platform.delay.H-1 ... platform.delay.0 --> platform.delayed --*...*.<q>--> <q>

A message enters at level H, its delay's highest set bit (the levels above
would only pass it on, and each hop costs the broker a topic match).

Every message in a level waits the same time, so RabbitMQ's head-of-queue
expiry never makes one wait behind another (the way per-message TTLs would):
a message is late by at most the dead-lettering hops, never early.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from kombu import Exchange, Queue

#: Direct exchange every work queue is bound to, with its name as routing key.
TASKS_EXCHANGE = "platform.tasks"
#: Direct exchange every dead-letter queue is bound to, with the work queue's name.
DEAD_LETTER_EXCHANGE = "platform.dlx"
#: Default topic exchange of events (routing key = event type); a setting may rename it.
EVENTS_EXCHANGE = "platform.events"
#: Topic exchange the last delay level hands a due message to; it routes by the target queue.
DELAYED_EXCHANGE = "platform.delayed"
#: Where the delayed exchange puts a due message whose target queue no longer exists.
DELAYED_UNROUTABLE = "platform.delayed.unroutable"
#: How long delay level 0 waits, in milliseconds: the resolution of delayed tasks.
DELAY_RESOLUTION_MS = 10
#: Delay levels (level L waits ``DELAY_RESOLUTION_MS * 2**L``): the longest delay is about 31 days.
DELAY_LEVELS = 28


def delay_level(level: int) -> str:
    """Name of delay level ``level``: its topic exchange and its queue share it."""
    return f"platform.delay.{level}"


def delay_binding_key(queue: str) -> str:
    """The binding of ``queue`` to the delayed exchange: any delay bits, then its name."""
    return "*." * DELAY_LEVELS + queue


def delay_level_arguments(level: int) -> dict[str, object]:
    """Arguments of delay level ``level``'s queue: a fixed TTL, then on to the next level.

    The routing key (the delay bits and the target) is kept when dead-lettering,
    so the next level's exchange reads the next bit. At-least-once
    dead-lettering as for the work queues.
    """
    onward = delay_level(level - 1) if level > 0 else DELAYED_EXCHANGE
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": DELAY_RESOLUTION_MS * 2**level,
        "x-dead-letter-exchange": onward,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def delay_level_bindings(level: int) -> tuple[str, str]:
    """(key to the level's queue, key on to the next exchange) of level ``level``'s exchange."""
    position = "*." * (DELAY_LEVELS - 1 - level)
    return f"{position}1.#", f"{position}0.#"


def subscriber_queue(service: str) -> str:
    """Name of the queue on which ``service`` receives the events it subscribed to."""
    return f"{service}.events"


def event_log(exchange: str) -> str:
    """Name of the stream that keeps every event published to ``exchange``."""
    return f"{exchange}.log"


def event_log_arguments(retention: float) -> dict[str, object]:
    """Arguments of the event log: a stream whose segments older than ``retention`` s go.

    RabbitMQ deletes whole segments, so an event can outlive the retention by up
    to one segment's age (https://www.rabbitmq.com/docs/streams#retention).
    """
    return {"x-queue-type": "stream", "x-max-age": f"{max(int(retention), 1)}s"}


def event_log_queue(exchange: str, retention: float) -> Queue:
    """The event log stream, bound to every event type of ``exchange``."""
    return Queue(
        event_log(exchange),
        Exchange(exchange, "topic", durable=True),
        routing_key="#",
        durable=True,
        queue_arguments=event_log_arguments(retention),
    )


def subscriber_limit_arguments(
    max_length: int, max_age: float, overflow: str, queue: str
) -> dict[str, object]:
    """Bounds of a subscriber queue, so an abandoned subscriber can't fill the disk.

    ``reject-publish``: a full queue refuses new events and the publisher's
    confirm is a nack (the other subscribers still get the event). ``dead-letter``:
    the oldest event is dropped to ``<queue>.dlq``; RabbitMQ only supports
    at-least-once dead-lettering with ``reject-publish``, so this is at most once
    (https://www.rabbitmq.com/docs/quorum-queues#dead-lettering). Events older
    than ``max_age`` are dead-lettered in either case.
    """
    arguments: dict[str, object] = {}
    if max_length > 0:
        arguments["x-max-length"] = max_length
    if max_age > 0:
        arguments["x-message-ttl"] = max(int(max_age * 1000), 1)
    if overflow == "dead-letter" and max_length > 0:
        arguments["x-overflow"] = "drop-head"
        arguments["x-dead-letter-strategy"] = "at-most-once"
    return arguments


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
    #: Topic patterns binding this queue to the events exchange (subscriber queues only).
    event_patterns: tuple[str, ...] = ()
    #: Queue arguments added to (or replacing) the work queue's, e.g. length limits.
    extra_arguments: tuple[tuple[str, object], ...] = ()

    @property
    def queue_arguments(self) -> dict[str, object]:
        return {**work_queue_arguments(self.name, self.delivery_limit), **dict(self.extra_arguments)}

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
    #: The topic exchange subscriber queues and the event log are bound to.
    events_exchange: str = EVENTS_EXCHANGE
    #: Seconds the event log keeps events; 0: no event log in this topology.
    event_log_retention: float = 0.0

    def with_subscribers(
        self, subscribers: tuple[WorkQueue, ...], events_exchange: str, event_log_retention: float
    ) -> Topology:
        """This topology plus subscriber queues (work queues with event bindings) and the log."""
        return replace(
            self,
            work_queues=(*self.work_queues, *subscribers),
            events_exchange=events_exchange,
            event_log_retention=event_log_retention,
        )

    @property
    def has_events(self) -> bool:
        return self.event_log_retention > 0 or any(q.event_patterns for q in self.work_queues)

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

    def exchanges(self) -> tuple[Exchange, ...]:
        exchanges: tuple[Exchange, ...] = (
            Exchange(TASKS_EXCHANGE, "direct", durable=True),
            Exchange(DEAD_LETTER_EXCHANGE, "direct", durable=True),
            # A due message for a queue that is gone is kept, not dropped.
            Exchange(
                DELAYED_EXCHANGE, "topic", durable=True, arguments={"alternate-exchange": DELAYED_UNROUTABLE}
            ),
            Exchange(DELAYED_UNROUTABLE, "fanout", durable=True),
            *(Exchange(delay_level(level), "topic", durable=True) for level in range(DELAY_LEVELS)),
        )
        if self.has_events:
            exchanges += (Exchange(self.events_exchange, "topic", durable=True),)
        return exchanges

    def exchange_bindings(self) -> tuple[tuple[str, str, str], ...]:
        """(destination exchange, source exchange, routing key): each level's bit-0 path."""
        return tuple(
            (
                delay_level(level - 1) if level > 0 else DELAYED_EXCHANGE,
                delay_level(level),
                delay_level_bindings(level)[1],
            )
            for level in range(DELAY_LEVELS)
        )

    def delay_queues(self) -> list[Queue]:
        """The delay levels' queues, each bound to its level's exchange for bit 1, and the catch-all."""
        unroutable = Queue(
            DELAYED_UNROUTABLE,
            Exchange(DELAYED_UNROUTABLE, "fanout", durable=True),
            durable=True,
            queue_arguments={"x-queue-type": "classic"},
        )
        return [
            unroutable,
            *(
                Queue(
                    delay_level(level),
                    Exchange(delay_level(level), "topic", durable=True),
                    routing_key=delay_level_bindings(level)[0],
                    durable=True,
                    queue_arguments=delay_level_arguments(level),
                )
                for level in range(DELAY_LEVELS)
            ),
        ]

    def consumer_queues(self) -> list[Queue]:
        """The kombu queues workers consume (Celery's ``task_queues``).

        Each is bound to the tasks exchange by its name, and only that: kombu
        gives a queue with several bindings no exchange, and Celery's publish
        paths read the queue's exchange. The other bindings (the delayed
        exchange, a subscriber's event patterns) are :meth:`queue_bindings`.
        """
        tasks = Exchange(TASKS_EXCHANGE, "direct", durable=True)
        return [
            Queue(
                queue.name, tasks, routing_key=queue.name, durable=True, queue_arguments=queue.queue_arguments
            )
            for queue in self.work_queues
        ]

    def queue_bindings(self) -> tuple[tuple[str, str, str], ...]:
        """(queue, exchange, routing key) beyond each work queue's own binding.

        Every work queue takes due delayed tasks from the delayed exchange; a
        subscriber queue also takes the events it subscribed to.
        """
        bindings: list[tuple[str, str, str]] = []
        for queue in self.work_queues:
            bindings.append((queue.name, DELAYED_EXCHANGE, delay_binding_key(queue.name)))
            bindings.extend((queue.name, self.events_exchange, pattern) for pattern in queue.event_patterns)
        return tuple(bindings)

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
        queues = [*self.consumer_queues(), *self.support_queues(), *self.delay_queues()]
        if self.event_log_retention > 0:
            queues.append(event_log_queue(self.events_exchange, self.event_log_retention))
        return queues
