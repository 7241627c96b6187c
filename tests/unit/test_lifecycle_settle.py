"""Lifecycle: what a retry or a dead letter publishes, and that the ack waits for the confirm.

A fake producer stands in for RabbitMQ's confirms (tests/unit/fakes.py); the
delay queues' TTL and the dead-letter exchange are RabbitMQ's and are tested
against a real broker in tests/integration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from amqp.exceptions import ChannelError, MessageNacked
from celery import Celery
from kombu.exceptions import LimitExceeded

from tests.unit.fakes import (
    EMPTY_BODY,
    FakeBroker,
    celery_headers,
    delivery,
    install_fake_producers,
    subscriptions_file,
    unit_app,
)
from workers.delivery.headers import Failure
from workers.delivery.lifecycle import (
    CARRIED_PROPERTIES,
    Lifecycle,
    install_lifecycle,
    lifecycle_of,
    publish_raw,
)
from workers.errors import PublishError

TIMEOUT = Failure(
    "transient", "TimeoutError", "read timed out", "Traceback ...\nTimeoutError: read timed out\n"
)
INVALID = Failure("permanent", "workers.errors.PermanentError", "amount must be positive", "Traceback ...\n")
#: Bytes that are not even JSON: a copy must carry them untouched.
ODD_BODY = b'\x00\xff{"not": json\x80'


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def app(tmp_path: Path, broker: FakeBroker) -> Iterator[Celery]:
    app = unit_app(tmp_path, subscriptions_file=str(subscriptions_file(tmp_path)))
    install_fake_producers(app, broker)
    yield app
    app.close()


@pytest.fixture
def lifecycle(app: Celery) -> Lifecycle:
    """The lifecycle of a worker consuming orders (ctag-orders) and email.events (ctag-email)."""
    return Lifecycle(app, "worker-1@host", lambda: {"ctag-orders": "orders", "ctag-email": "email.events"})


def settle(lifecycle: Lifecycle, action: str, message: Any, failure: Failure, number: int) -> bool:
    """Run ``retry`` (``number`` = the retry's number, 1.5 s delay) or ``dead_letter`` (``number`` = retries)."""
    ack = message.ack
    requeue = lambda: message.reject(requeue=True)  # noqa: E731 - what the consumer passes
    if action == "retry":
        return lifecycle.retry(message, failure, 1.5, number, ack=ack, requeue=requeue)
    return lifecycle.dead_letter(message, failure, number, ack=ack, requeue=requeue)


# -- where a copy goes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "number", "queue", "routing_key", "consumer_tag", "where", "expiration", "retry_count"),
    [
        pytest.param("retry", 1, "orders", None, "ctag-orders", "(default)/orders.retry.1", 1.5, 1,
                     id="a first retry goes to the first delay queue"),
        pytest.param("retry", 3, "orders", None, "ctag-orders", "(default)/orders.retry.3", 1.5, 3,
                     id="a third retry goes to the third delay queue"),
        pytest.param("retry", 9, "orders", None, "ctag-orders", "(default)/orders.retry.3", 1.5, 9,
                     id="a retry past the last tier waits in the last delay queue"),
        pytest.param("retry", 1, "payments", None, "ctag-other", "(default)/payments.retry.1", 1.5, 1,
                     id="a work queue is found by routing key when the tag is not known"),
        pytest.param("dead_letter", 2, "orders", None, "ctag-orders", "platform.dlx/orders", None, 2,
                     id="a dead letter goes through the dead-letter exchange keyed by its queue"),
        pytest.param("retry", 1, "email.events", "order.created", "ctag-email",
                     "(default)/email.events.retry.1", 1.5, 1,
                     id="a subscriber's retry is found by consumer tag, not by the event type"),
        pytest.param("dead_letter", 0, "email.events", "order.created", "ctag-email",
                     "platform.dlx/email.events", None, 0,
                     id="a subscriber's dead letter is found by consumer tag, not by the event type"),
        pytest.param("retry", 2, "legacy", None, "ctag-legacy", "platform.dlx/legacy", None, 1,
                     id="a queue without a delay ladder dead-letters instead of retrying"),
    ],
)  # fmt: skip
def test_a_settled_delivery_is_copied_to_its_next_queue_then_acked(
    lifecycle: Lifecycle,
    broker: FakeBroker,
    action: str,
    number: int,
    queue: str,
    routing_key: str | None,
    consumer_tag: str,
    where: str,
    expiration: float | None,
    retry_count: int,
) -> None:
    """Given a delivery from ``queue``, when the lifecycle retries or dead-letters it,
    then one confirmed copy goes to the right queue with its retry count (and a TTL
    for a delay queue), and only then is the original acked."""
    exchange = "platform.events" if routing_key else "platform.tasks"
    message = delivery(
        broker,
        celery_headers("tests.charge"),
        queue=queue,
        routing_key=routing_key,
        exchange=exchange,
        consumer_tag=consumer_tag,
    )

    moved = settle(lifecycle, action, message, TIMEOUT, number)

    assert moved is True
    assert broker.history == [f"publish {where}", f"ack {message.delivery_tag}"]
    [copy] = broker.published
    assert copy.expiration == expiration
    assert copy.headers["x-retry-count"] == retry_count
    assert copy.headers["retries"] == retry_count, "Celery's own counter is kept in step"
    assert copy.headers["x-original-queue"] == queue
    assert copy.headers["x-original-exchange"] == exchange
    assert copy.headers["x-original-routing-key"] == (routing_key or queue)


@pytest.mark.parametrize("action", ["retry", "dead_letter"])
def test_a_copy_keeps_body_headers_and_properties_and_gains_the_failure_headers(
    lifecycle: Lifecycle, broker: FakeBroker, action: str
) -> None:
    """Given a delivery with odd bytes, its own headers and AMQP properties, when it
    is retried or dead-lettered, then the copy has the same bytes, content type and
    encoding, keeps every original header, carries the message properties, is
    persistent and mandatory, and gains the x- failure headers."""
    headers = celery_headers("tests.charge", task_id="t-42", **{"x-trace": "abc", "x-delivery-count": 1})
    message = delivery(
        broker,
        headers,
        ODD_BODY,
        content_type="application/x-odd",
        content_encoding="binary",
        correlation_id="t-42",
        reply_to="replies",
        priority=5,
        message_id="m-1",
        timestamp=1_700_000_000,
        type="tests.charge",
        user_id="guest",
    )

    settle(lifecycle, action, message, INVALID, 1)

    [copy] = broker.published
    assert copy.body == ODD_BODY
    assert (copy.content_type, copy.content_encoding) == ("application/x-odd", "binary")
    assert (copy.delivery_mode, copy.mandatory) == (2, True)
    assert copy.confirm_timeout == 0.5, "the publish timeout bounds the wait for the confirm"
    assert copy.properties == {
        "correlation_id": "t-42",
        "reply_to": "replies",
        "priority": 5,
        "message_id": "m-1",
        "timestamp": 1_700_000_000,
        "type": "tests.charge",
    }
    assert set(copy.properties) == set(CARRIED_PROPERTIES), "user_id is not carried: the broker checks it"
    assert copy.headers["x-trace"] == "abc"
    assert {key: copy.headers[key] for key in ("task", "id", "lang")} == {
        "task": "tests.charge",
        "id": "t-42",
        "lang": "py",
    }
    assert "x-delivery-count" not in copy.headers, "the broker's count is not ours to carry"
    assert copy.headers["x-task-name"] == "tests.charge"
    assert copy.headers["x-task-id"] == "t-42"
    assert copy.headers["x-error-class"] == "permanent"
    assert copy.headers["x-error-type"] == "workers.errors.PermanentError"
    assert copy.headers["x-error-message"] == "amount must be positive"
    assert copy.headers["x-error-traceback"] == "Traceback ...\n"
    assert copy.headers["x-worker"] == "worker-1@host"
    assert copy.headers["x-first-failed-at"] == copy.headers["x-last-failed-at"]


def test_a_copy_of_a_message_without_content_type_is_published_as_opaque_bytes(
    lifecycle: Lifecycle, broker: FakeBroker
) -> None:
    """Given a delivery without content type or encoding, its dead letter is
    published as application/octet-stream, binary: kombu must not re-encode it."""
    message = delivery(broker, {}, b"\x01\x02", content_type=None, content_encoding=None)

    settle(lifecycle, "dead_letter", message, INVALID, 0)

    [copy] = broker.published
    assert (copy.body, copy.content_type, copy.content_encoding) == (
        b"\x01\x02",
        "application/octet-stream",
        "binary",
    )


def test_a_second_failure_keeps_the_first_failure_time_and_the_original_queue(
    lifecycle: Lifecycle, broker: FakeBroker
) -> None:
    """Given a message back from a delay queue with its first failure's headers, when
    it fails again, then x-first-failed-at and x-original-queue are the first ones."""
    headers = celery_headers(
        "tests.charge",
        retries=1,
        **{
            "x-retry-count": 1,
            "x-first-failed-at": "2024-01-01T00:00:00.000+00:00",
            "x-original-queue": "orders",
        },
    )
    message = delivery(broker, headers, EMPTY_BODY)

    settle(lifecycle, "retry", message, TIMEOUT, 2)

    [copy] = broker.published
    assert copy.headers["x-first-failed-at"] == "2024-01-01T00:00:00.000+00:00"
    assert copy.headers["x-last-failed-at"] != "2024-01-01T00:00:00.000+00:00"
    assert copy.headers["x-original-queue"] == "orders"
    assert copy.headers["x-retry-count"] == 2


# -- a publish that is not confirmed -----------------------------------------------

REFUSALS = [
    pytest.param(MessageNacked(), id="the broker nacks the copy"),
    pytest.param(TimeoutError("timed out"), id="no confirm within the publish timeout"),
    pytest.param(ChannelError(312, "NO_ROUTE", (60, 50), "Basic.return"), id="no queue takes the copy"),
    pytest.param(ConnectionResetError(104, "Connection reset by peer"), id="the connection drops"),
]


@pytest.mark.parametrize("action", ["retry", "dead_letter"])
@pytest.mark.parametrize("failure", REFUSALS)
def test_an_unconfirmed_copy_means_the_original_is_requeued_not_acked(
    lifecycle: Lifecycle, broker: FakeBroker, action: str, failure: BaseException
) -> None:
    """Given a broker that does not confirm the copy, when a delivery is retried or
    dead-lettered, then the original is requeued (at worst a duplicate, never a
    loss) and nothing counts as published."""
    broker.refuse(failure)
    message = delivery(broker, celery_headers("tests.charge"))

    moved = settle(lifecycle, action, message, TIMEOUT, 1)

    assert moved is False
    assert broker.history == [f"requeue {message.delivery_tag}"]
    assert broker.published == []


def test_no_free_producer_in_time_means_the_original_is_requeued(
    lifecycle: Lifecycle, broker: FakeBroker
) -> None:
    """Given a producer pool with none free within the publish timeout, a dead
    letter is not published and the original goes back to the queue."""
    broker.no_producer = LimitExceeded("no producer free")
    message = delivery(broker, celery_headers("tests.charge"))

    assert settle(lifecycle, "dead_letter", message, INVALID, 0) is False
    assert broker.history == [f"requeue {message.delivery_tag}"]


@pytest.mark.parametrize("failure", REFUSALS)
def test_publish_raw_raises_a_publish_error_naming_where_it_went(
    app: Celery, broker: FakeBroker, failure: BaseException
) -> None:
    """publish_raw raises PublishError naming the exchange and routing key, with
    the broker's reason, whatever kind of refusal it was."""
    broker.refuse(failure)
    message = delivery(broker, {})

    with pytest.raises(PublishError, match=r"publish to platform\.dlx/orders failed") as raised:
        publish_raw(app, message, "platform.dlx", "orders", {"x-error-class": "poison"})
    assert raised.value.__cause__ is failure


def test_publish_raw_names_the_default_exchange_readably(app: Celery, broker: FakeBroker) -> None:
    """A failed publish to a delay queue (the default exchange) says '(default)'."""
    broker.refuse(MessageNacked())
    with pytest.raises(PublishError, match=r"publish to \(default\)/orders\.retry\.1 failed"):
        publish_raw(app, delivery(broker, {}), "", "orders.retry.1", {}, expiration=2.0)


# -- one lifecycle per app -----------------------------------------------------------


def test_lifecycle_of_an_app_without_a_platform_consumer_raises_lookup_error(tmp_path: Path) -> None:
    """Given an app whose worker never started the platform consumer here, asking
    for its lifecycle raises LookupError naming the worker_consumer setting."""
    app = unit_app(tmp_path, main="no-consumer")
    try:
        with pytest.raises(
            LookupError, match="worker_consumer must be workers.delivery.consumer:PlatformConsumer"
        ):
            lifecycle_of(app)
    finally:
        app.close()


def test_the_installed_lifecycle_is_the_one_its_app_hands_out_and_only_its_app(
    app: Celery, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    """Given a lifecycle installed for one app, lifecycle_of returns it for that app,
    a later install replaces it, and another app in the process still has none."""
    install_lifecycle(app, lifecycle)
    assert lifecycle_of(app) is lifecycle

    replacement = Lifecycle(app, "worker-2@host", dict)
    install_lifecycle(app, replacement)
    assert lifecycle_of(app) is replacement

    other = unit_app(tmp_path, main="other")
    try:
        with pytest.raises(LookupError):
            lifecycle_of(other)
    finally:
        other.close()
