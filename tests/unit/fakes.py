"""Small fakes for unit tests of the settling code: what the broker would see, without one.

- :class:`FakeBroker` keeps, in order, what RabbitMQ would see from one worker:
  each copy the worker published *and the broker confirmed*, and each
  settlement of a delivery (ack, requeue, reject). A test can make the broker
  refuse publishes (:meth:`FakeBroker.refuse`): the publish then raises, as an
  unconfirmed publish does in kombu, and nothing is recorded as published.
- :func:`delivery` makes a real :class:`kombu.message.Message` (what Celery's
  consumer gets from py-amqp) on a :class:`FakeChannel` that reports acks and
  rejects to the broker, so double settlements fail as they do in kombu.
- :func:`install_fake_producers` puts a producer pool in front of an app that
  publishes to the fake broker.
- :class:`FakeEventer` records the task events Flower would get.

Never a DLX, a TTL or a delivery count: those are RabbitMQ's, and stay in the
integration tests against a real broker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.message import Message

from config.app import create_app
from config.settings import Settings
from tests.support.messages import celery_message

#: Nothing listens here: if a fake is ever bypassed, the test fails fast instead
#: of publishing to the developer's RabbitMQ.
UNREACHABLE_BROKER = "amqp://guest:guest@127.0.0.1:1//"


def unit_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a unit-test app: two work queues, no jitter, no broker, no state file."""
    values: dict[str, Any] = {
        "broker_url": UNREACHABLE_BROKER,
        "queues": ("orders", "payments"),
        "default_queue": "default",
        "task_modules": (),
        "retry_base": 1.0,
        "retry_jitter_max": 0.0,
        "max_retries": 3,
        "max_unknown_retries": 1,
        "delivery_limit": 3,
        "publish_timeout": 0.5,
        "traceback_limit": 200,
        "idempotency": False,
        "state_url": f"sqlite:///{tmp_path / 'state.sqlite3'}",
    }
    values.update(overrides)
    return Settings(**values)


def unit_app(tmp_path: Path, main: str = "unit", **overrides: Any) -> Celery:
    """A platform app built by :func:`config.app.create_app` from :func:`unit_settings`."""
    return create_app(unit_settings(tmp_path, **overrides), main=main)


def subscriptions_file(tmp_path: Path) -> Path:
    """A subscriptions file: the ``email`` service handles ``order.created``."""
    path = tmp_path / "subscriptions.toml"
    path.write_text('[services.email]\nevents = { "order.created" = "tests.events.email" }\n')
    return path


@dataclass(frozen=True)
class Published:
    """One copy the worker published and the broker confirmed."""

    body: bytes
    exchange: str
    routing_key: str
    headers: dict[str, Any]
    content_type: str | None
    content_encoding: str | None
    delivery_mode: int | None
    mandatory: bool
    #: Seconds (kombu turns them into the AMQP ``expiration`` in milliseconds).
    expiration: float | None
    confirm_timeout: float | None
    #: Every other message property passed (correlation_id, reply_to, ...).
    properties: dict[str, Any]


@dataclass
class FakeBroker:
    """What RabbitMQ would see from one worker, in order."""

    #: ``publish <exchange>/<routing key>``, ``ack <tag>``, ``requeue <tag>``, ``reject <tag>``.
    history: list[str] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    #: Raised by every publish while set: the broker does not confirm.
    failure: BaseException | None = None
    #: Raised when a producer is asked for while set: none is free in time.
    no_producer: BaseException | None = None
    _tags: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    def refuse(self, failure: BaseException) -> None:
        """From now on, publishes raise ``failure`` and are not confirmed."""
        self.failure = failure

    def next_tag(self) -> int:
        return next(self._tags)

    def settlement(self, tag: int) -> str | None:
        """``ack``, ``requeue`` or ``reject`` for delivery ``tag``; None while it is unsettled."""
        for entry in self.history:
            verb, _, settled = entry.partition(" ")
            if verb in {"ack", "requeue", "reject"} and settled == str(tag):
                return verb
        return None


class FakeChannel:
    """The channel a delivery arrived on: settlements go to the broker's history."""

    #: kombu asks this before acking (None: no consumer on this channel is no-ack).
    no_ack_consumers = None

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.broker.history.append(f"ack {delivery_tag}")

    def basic_reject(self, delivery_tag: int, requeue: bool = False) -> None:
        self.broker.history.append(f"{'requeue' if requeue else 'reject'} {delivery_tag}")


class FakeProducer:
    """A kombu producer whose publishes the fake broker confirms (or refuses)."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    def publish(
        self,
        body: bytes,
        routing_key: str | None = None,
        delivery_mode: int | None = None,
        mandatory: bool = False,
        immediate: bool = False,
        priority: int = 0,
        content_type: str | None = None,
        content_encoding: str | None = None,
        serializer: str | None = None,
        headers: dict[str, Any] | None = None,
        compression: str | None = None,
        exchange: str | None = None,
        retry: bool = False,
        retry_policy: dict[str, Any] | None = None,
        declare: Any = None,
        expiration: float | None = None,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        **properties: Any,
    ) -> None:
        if self.broker.failure is not None:
            raise self.broker.failure
        if priority:
            properties["priority"] = priority
        copy = Published(
            body=body,
            exchange=exchange or "",
            routing_key=routing_key or "",
            headers=dict(headers or {}),
            content_type=content_type,
            content_encoding=content_encoding,
            delivery_mode=delivery_mode,
            mandatory=mandatory,
            expiration=expiration,
            confirm_timeout=confirm_timeout,
            properties=properties,
        )
        self.broker.published.append(copy)
        self.broker.history.append(f"publish {copy.exchange or '(default)'}/{copy.routing_key}")


class FakeProducerPool:
    """Stands in for ``app.producer_pool`` (kombu's pool of producers)."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    @contextmanager
    def acquire(self, block: bool = False, timeout: float | None = None) -> Iterator[FakeProducer]:
        if self.broker.no_producer is not None:
            raise self.broker.no_producer
        yield FakeProducer(self.broker)

    def force_close_all(self) -> None:
        """Called by ``app.close()``; there is nothing to close."""


def install_fake_producers(app: Celery, broker: FakeBroker) -> None:
    """Make ``app.producer_pool`` publish to ``broker``.

    ``app.producer_pool`` is a read-only property over ``app.amqp._producer_pool``,
    which Celery fills lazily from a real connection; filling it first is the
    one seam that keeps the platform's own publishing code unchanged.
    """
    app.amqp._producer_pool = FakeProducerPool(broker)


def celery_headers(task: str, task_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """The headers of a Celery protocol 2 task message (what ``apply_async`` sends)."""
    _, headers = celery_message(task, task_id=task_id)
    headers.update(extra)
    return headers


#: The body of a Celery protocol 2 message without arguments, as bytes on the wire.
EMPTY_BODY = json.dumps(
    [[], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
).encode()


def delivery(
    broker: FakeBroker,
    headers: dict[str, Any],
    body: bytes = EMPTY_BODY,
    *,
    queue: str = "orders",
    exchange: str = "platform.tasks",
    routing_key: str | None = None,
    consumer_tag: str = "ctag-orders",
    content_type: str | None = "application/json",
    content_encoding: str | None = "utf-8",
    **properties: Any,
) -> Message:
    """A delivery from ``queue`` as the worker's consumer gets it (a real kombu message).

    Args:
        broker: where its ack or reject is recorded.
        headers: its application headers.
        body: its bytes.
        queue: the queue it was consumed from (its routing key unless given).
        exchange: the exchange it was published to.
        routing_key: the routing key it was published with.
        consumer_tag: the tag of the consumer it was delivered to.
        content_type: its content type.
        content_encoding: its content encoding.
        properties: further AMQP properties (correlation_id, reply_to, ...).
    """
    return Message(
        body=body,
        delivery_tag=broker.next_tag(),
        content_type=content_type,
        content_encoding=content_encoding,
        delivery_info={
            "exchange": exchange,
            "routing_key": queue if routing_key is None else routing_key,
            "consumer_tag": consumer_tag,
            "redelivered": False,
        },
        # py-amqp hands kombu every property, the headers and delivery mode included.
        properties={
            "content_type": content_type,
            "content_encoding": content_encoding,
            "application_headers": headers,
            "delivery_mode": 2,
            **properties,
        },
        headers=headers,
        # What the worker's consumer accepts (the app's accept_content, as MIME types).
        accept={"application/json"},
        channel=FakeChannel(broker),
    )


@dataclass
class FakeEventer:
    """The worker's event dispatcher: records the task events Flower would show."""

    enabled: bool = True
    sent: list[str] = field(default_factory=list)

    def send(self, type: str, **fields: Any) -> None:
        self.sent.append(type)


def run_attempt(task: Any, retries: int = 0, args: tuple[Any, ...] = ()) -> Any:
    """Run ``task`` in this process as a worker's pool process runs it (Celery's tracer, not eager).

    Returns what the attempt ended with: the return value, or the exception it
    raised (for a failure, the platform's verdict).
    """
    from celery.app.trace import build_tracer
    from celery.utils import uuid

    tracer = build_tracer(task.name, task, eager=False, propagate=False, app=task.app)
    request = {"retries": retries, "delivery_info": {"routing_key": "orders"}, "hostname": "unit@test"}
    outcome = tracer(uuid(), list(args), {}, request)
    retval = outcome[0]
    if outcome[1] is None:
        return retval
    raised = retval.exception
    return getattr(raised, "exc", raised)  # billiard wraps it to carry the traceback


def unstarted_consumer(app: Any, taken: list[Any], hostname: str = "worker-1@host") -> Any:
    """A real PlatformConsumer, not ``__new__`` plus attributes, never started.

    Its own ``__init__`` builds and installs the lifecycle and reads the
    delivery limit, and Celery's handler and strategies run for real: "passed
    on" means Celery built a PlatformRequest and appended it to ``taken`` (the
    pool). A worker would hand it a pool, a timer and a controller; stand-ins
    suffice because none is used on receipt. The blueprint is built but never
    started, so no connection is opened. It costs a few milliseconds.
    """
    from types import SimpleNamespace

    from celery.worker import state

    from workers.delivery.consumer import PlatformConsumer

    consumer = PlatformConsumer(
        taken.append,
        app=app,
        hostname=hostname,
        pool=SimpleNamespace(is_green=False, apply_async=None),
        timer=SimpleNamespace(call_at=None),
        controller=SimpleNamespace(state=state, use_eventloop=False),
    )
    consumer.update_strategies()
    return consumer
