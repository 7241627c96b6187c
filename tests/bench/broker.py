"""The broker side of a measurement: fresh vhosts, fast pre-filling, exact depths.

Queue depth and consumer count come from a passive ``queue.declare`` (exact
and immediate), never from the management API's statistics, which RabbitMQ
refreshes only every few seconds.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import amqp
from amqp.exceptions import NotFound

from tests.support.broker import Vhost

#: Unconfirmed messages in flight when pre-filling a queue.
FILL_WINDOW = 500


@contextmanager
def fresh_vhost(prefix: str = "bench") -> Iterator[Vhost]:
    """A throw-away vhost for one side of one round, deleted afterwards."""
    vhost = Vhost.create(prefix)
    try:
        yield vhost
    finally:
        vhost.delete()


class QueueProbe:
    """Polls one queue's ready messages and consumers over one connection."""

    def __init__(self, vhost: Vhost) -> None:
        self.connection = vhost.connect()
        self.channel = self.connection.channel()

    def read(self, queue: str) -> tuple[int, int] | None:
        """``(ready messages, consumers)`` of ``queue``, or None if it does not exist."""
        try:
            _, messages, consumers = self.channel.queue_declare(queue, passive=True)
        except NotFound:
            self.channel = self.connection.channel()
            return None
        return messages, consumers

    def ready(self, queue: str) -> int:
        found = self.read(queue)
        return found[0] if found else 0

    def wait_for_consumer(self, queue: str, timeout: float, alive: Any = None, consumers: int = 1) -> float:
        """Wait until ``queue`` has ``consumers`` consumers; returns the time (``perf_counter``) it was seen.

        Raises:
            TimeoutError: not within ``timeout`` seconds, or ``alive()`` said no.
        """
        deadline = time.perf_counter() + timeout
        while True:
            found = self.read(queue)
            now = time.perf_counter()
            if found and found[1] >= consumers:
                return now
            if now > deadline or (alive is not None and not alive()):
                seen = found[1] if found else 0
                raise TimeoutError(
                    f"{seen} of {consumers} consumer(s) on queue {queue!r} after {timeout:.0f}s"
                )
            time.sleep(0.002)

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def __enter__(self) -> QueueProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def declare_queue(vhost: Vhost, name: str, arguments: dict[str, Any] | None = None) -> None:
    """Declare a durable queue on the default exchange."""
    with vhost.connect() as connection:
        connection.channel().queue_declare(name, durable=True, auto_delete=False, arguments=arguments or {})


def declare_fan_out(vhost: Vhost, exchange: str, routing_key: str, queues: Iterable[str]) -> None:
    """A durable topic ``exchange`` with a durable quorum queue per name, each bound to ``routing_key``."""
    with vhost.connect() as connection:
        channel = connection.channel()
        channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
        for name in queues:
            channel.queue_declare(name, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(name, exchange, routing_key)


def declare_kombu(vhost: Vhost, queues: Iterable[Any]) -> None:
    """Declare kombu queues (with their exchanges and bindings) as a worker would."""
    from kombu import Connection

    with Connection(vhost.url) as connection:
        channel = connection.channel()
        for queue in queues:
            queue(channel).declare()


def celery_messages(task: str, calls: Iterable[tuple[list[Any], dict[str, Any]]]) -> Iterator[amqp.Message]:
    """Celery protocol 2 task messages, as ``apply_async`` would build them."""
    origin = f"{os.getpid()}@{socket.gethostname()}"
    for args, kwargs in calls:
        task_id = str(uuid.uuid4())
        headers = {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": repr(tuple(args)), "kwargsrepr": repr(kwargs), "origin": origin,
            "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        }  # fmt: skip
        body = json.dumps([args, kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
        yield amqp.Message(
            body.encode(),
            content_type="application/json",
            content_encoding="utf-8",
            application_headers=headers,
            delivery_mode=2,
            correlation_id=task_id,
            reply_to="",
        )


#: Traceback text of a seeded dead letter: as long as a typical Python traceback.
DEAD_LETTER_TRACEBACK = (
    "Traceback (most recent call last):\n"
    + '  File "/srv/app/tasks/bench.py", line 42, in noop\n    gateway.call()\n' * 8
    + "TimeoutError: the gateway did not answer within 5.0s\n"
)


def dead_letters(queue: str, count: int) -> Iterator[amqp.Message]:
    """``count`` dead letters of ``queue``'s no-op task, with the headers a platform worker writes."""
    failed_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    for message in celery_messages("bench.noop", (([], {}) for _ in range(count))):
        headers = message.properties["application_headers"]
        headers.update(
            {
                "x-original-queue": queue,
                "x-original-exchange": "platform.tasks",
                "x-original-routing-key": queue,
                "x-task-name": "bench.noop",
                "x-task-id": headers["id"],
                "x-error-class": "transient",
                "x-error-type": "TimeoutError",
                "x-error-message": "the gateway did not answer within 5.0s",
                "x-error-traceback": DEAD_LETTER_TRACEBACK,
                "x-retry-count": 5,
                "retries": 5,
                "x-first-failed-at": failed_at,
                "x-last-failed-at": failed_at,
                "x-worker": "bench@localhost",
            }
        )
        yield message


def dramatiq_messages(queue: str, actor: str, calls: Iterable[list[Any]]) -> Iterator[amqp.Message]:
    """Dramatiq messages, as ``actor.send`` would encode them."""
    for args in calls:
        body = {
            "queue_name": queue,
            "actor_name": actor,
            "args": args,
            "kwargs": {},
            "options": {},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": int(time.time() * 1000),
        }
        yield amqp.Message(json.dumps(body, separators=(",", ":")).encode(), delivery_mode=2)


def publish_pipelined(
    vhost: Vhost, exchange: str, routing_key: str, messages: Iterable[amqp.Message], window: int = FILL_WINDOW
) -> int:
    """Publish ``messages`` with confirms, ``window`` in flight; returns how many.

    Raises:
        RuntimeError: the broker nacked or returned a message.
    """
    state = {"acked": 0, "failed": 0}

    def on_ack(tag: int, multiple: bool) -> None:
        # RabbitMQ confirms in publish order, so the highest tag is the count.
        state["acked"] = max(state["acked"], tag)

    def on_nack(tag: int, multiple: bool) -> None:
        state["failed"] += 1

    sent = 0
    with vhost.connect() as connection:
        channel = connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(on_ack)
        channel.events["basic_nack"].add(on_nack)
        channel.events["basic_return"].add(lambda *a: on_nack(0, False))
        for message in messages:
            channel.basic_publish(message, exchange, routing_key, mandatory=True)
            sent += 1
            while sent - state["acked"] > window:
                connection.drain_events(timeout=10)
        while state["acked"] < sent and not state["failed"]:
            connection.drain_events(timeout=10)
    if state["failed"]:
        raise RuntimeError(f"{state['failed']} of {sent} messages to {exchange}/{routing_key} were refused")
    return sent
