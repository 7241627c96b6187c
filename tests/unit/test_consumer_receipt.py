"""PlatformConsumer on receipt: what it can't run is dead-lettered with the reason, never dropped.

The consumer is a real one (see :func:`consumer`); its dead letters go to a
fake producer and its deliveries are real kombu messages on a fake channel
(tests/unit/fakes.py). The quorum queue's own delivery count and delivery limit
are RabbitMQ's, tested in tests/integration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from amqp.exceptions import MessageNacked
from celery import Celery
from celery.exceptions import InvalidTaskError, NotRegistered
from celery.worker import state
from kombu.exceptions import ContentDisallowed, DecodeError

from tests.unit.fakes import (
    EMPTY_BODY,
    FakeBroker,
    celery_headers,
    delivery,
    install_fake_producers,
    unit_app,
    unstarted_consumer,
)
from workers.delivery.consumer import MALFORMED_ERRORS, PlatformConsumer
from workers.delivery.request import PlatformRequest

#: A pickled ``[]`` (protocol 4): refused by content type, never unpickled.
PICKLE = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94."


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def app(tmp_path: Path, broker: FakeBroker) -> Iterator[Celery]:
    """delivery_limit 3 (tests/unit/fakes.py); one task, ``tests.charge``."""
    app = unit_app(tmp_path)

    @app.task(name="tests.charge", bind=True, shared=False)
    def charge(self: Any) -> None: ...

    install_fake_producers(app, broker)
    yield app
    app.close()


@pytest.fixture
def taken() -> Iterator[list[PlatformRequest]]:
    """Requests the consumer handed on to the pool (released from Celery's worker state after)."""
    requests: list[PlatformRequest] = []
    yield requests
    for request in requests:
        state.task_ready(request)


@pytest.fixture
def consumer(app: Celery, taken: list[PlatformRequest]) -> PlatformConsumer:
    """A real consumer, never started (tests/unit/fakes.py: unstarted_consumer)."""
    return unstarted_consumer(app, taken)


def dead_letter_of(broker: FakeBroker, tag: int) -> dict[str, Any]:
    """The headers of the one dead letter, after checking it went to the DLQ and then the ack."""
    assert broker.history == ["publish platform.dlx/orders", f"ack {tag}"]
    [copy] = broker.published
    return copy.headers


# -- Celery's hooks for messages it can't run --------------------------------------------

HOOKS: list[Any] = [
    pytest.param(lambda c, m: c.on_decode_error(m, ContentDisallowed("refusing to deserialize pickle")),
                 "disallowed", "ContentDisallowed", "refusing to deserialize pickle",
                 id="on_decode_error: a content type not accepted is disallowed"),
    pytest.param(lambda c, m: c.on_decode_error(m, DecodeError("Expecting value: line 1")),
                 "undecodable", "DecodeError", "Expecting value: line 1",
                 id="on_decode_error: a body that does not decode is undecodable"),
    pytest.param(lambda c, m: c.on_decode_error(m, UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")),
                 "undecodable", "UnicodeDecodeError", "'utf-8' codec can't decode byte 0xff in position 0: bad",
                 id="on_decode_error: any other decode error is undecodable"),
    pytest.param(lambda c, m: c.on_invalid_task(None, m, InvalidTaskError("invalid ETA value 'soon'")),
                 "undecodable", "InvalidTaskError", "invalid ETA value 'soon'",
                 id="on_invalid_task: an invalid task is undecodable"),
    pytest.param(lambda c, m: c.on_invalid_task(None, m, ContentDisallowed("pickle")),
                 "disallowed", "ContentDisallowed", "pickle",
                 id="on_invalid_task: a content type not accepted is disallowed"),
    pytest.param(lambda c, m: c.on_unknown_message({"hello": "world"}, m),
                 "undecodable", "NotATaskMessage", "the message has no Celery 'task' header (not a task message)",
                 id="on_unknown_message: not a task message is undecodable"),
    pytest.param(lambda c, m: c.on_unknown_task(None, m, NotRegistered("tests.charge")),
                 "unknown-task", "NotRegistered", "no task named 'tests.charge' here",
                 id="on_unknown_task: a task this worker doesn't know names it"),
]  # fmt: skip


@pytest.mark.parametrize(("hook", "error_class", "error_type", "text"), HOOKS)
def test_each_of_celerys_refusal_hooks_dead_letters_the_message_with_its_reason(
    consumer: PlatformConsumer,
    broker: FakeBroker,
    hook: Callable[[PlatformConsumer, Any], None],
    error_class: str,
    error_type: str,
    text: str,
) -> None:
    """Given a delivery Celery refuses, when the hook runs, then the message goes to
    its DLQ, body byte for byte, with the reason and its retry count, and only then
    is it acked (stock Celery would ack or reject it and lose it)."""
    headers = celery_headers("tests.charge", retries=2, **{"x-retry-count": 2})
    message = delivery(broker, headers, b"\x00 any bytes \xff")

    hook(consumer, message)

    dead = dead_letter_of(broker, message.delivery_tag)
    assert broker.published[0].body == b"\x00 any bytes \xff"
    assert dead["x-error-class"] == error_class
    assert dead["x-error-type"] == error_type
    assert dead["x-error-message"] == text
    assert dead["x-original-queue"] == "orders"
    assert dead["x-retry-count"] == 2
    assert dead["x-worker"] == "worker-1@host"


def test_a_refusal_whose_dead_letter_is_not_confirmed_is_requeued(
    consumer: PlatformConsumer, broker: FakeBroker
) -> None:
    """Given a broker that nacks the dead letter, a refused message goes back to its
    queue instead of being acked away."""
    broker.refuse(MessageNacked())
    message = delivery(broker, celery_headers("tests.charge"))

    consumer.on_unknown_task(None, message, NotRegistered("tests.charge"))

    assert broker.history == [f"requeue {message.delivery_tag}"]


# -- the handler: poison, then Celery's strategy ---------------------------------------


@pytest.mark.parametrize(
    ("deliveries", "poison"),
    [
        pytest.param(None, False, id="a first delivery is passed on"),
        pytest.param(1, False, id="one earlier delivery is passed on"),
        pytest.param(2, False, id="one below the limit is passed on"),
        pytest.param(3, True, id="at the limit is poison"),
        pytest.param(7, True, id="past the limit is poison"),
    ],
)
def test_a_delivery_whose_count_reached_the_limit_is_dead_lettered_as_poison(
    consumer: PlatformConsumer,
    broker: FakeBroker,
    taken: list[PlatformRequest],
    deliveries: int | None,
    poison: bool,
) -> None:
    """Given the quorum queue's count of earlier deliveries that ended without an ack,
    when the count reached the delivery limit (3), then the message is dead-lettered
    as poison before any pool process runs it; below the limit it is passed on to
    the pool, unsettled."""
    extra = {} if deliveries is None else {"x-delivery-count": deliveries}
    headers = celery_headers("tests.charge", **extra)
    message = delivery(broker, headers)

    consumer.create_task_handler()(message)

    if poison:
        dead = dead_letter_of(broker, message.delivery_tag)
        assert dead["x-error-class"] == "poison"
        assert dead["x-error-type"] == "DeliveryLimitExceeded"
        assert dead["x-error-message"].startswith(f"delivered {deliveries + 1} times")
        assert taken == []
    else:
        assert broker.history == []
        assert [request.id for request in taken] == [headers["id"]]
        assert isinstance(taken[0], PlatformRequest)


@pytest.mark.parametrize("error", MALFORMED_ERRORS, ids=lambda error: error.__name__)
def test_a_malformed_message_the_strategy_chokes_on_is_dead_lettered_as_undecodable(
    consumer: PlatformConsumer, broker: FakeBroker, taken: list[PlatformRequest], error: type[Exception]
) -> None:
    """Given Celery's strategy raising one of the errors a message's shape causes while
    it builds the request, the message is dead-lettered as undecodable with that
    error, not left unacknowledged or acked away."""

    def choke(message: Any, *args: Any) -> None:
        raise error("the message's shape broke the strategy")

    consumer.strategies["tests.charge"] = choke
    message = delivery(broker, celery_headers("tests.charge"))

    consumer.create_task_handler()(message)

    dead = dead_letter_of(broker, message.delivery_tag)
    assert dead["x-error-class"] == "undecodable"
    assert dead["x-error-type"] == error.__name__
    assert taken == []


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "error_class"),
    [
        pytest.param(b'{"not": json', "application/json", celery_headers("tests.charge"), "undecodable",
                     id="invalid JSON is undecodable"),
        pytest.param(PICKLE, "application/x-python-serialize", celery_headers("tests.charge"), "disallowed",
                     id="pickle is disallowed"),
        pytest.param(EMPTY_BODY, "application/json", celery_headers("tests.no_such_task"), "unknown-task",
                     id="a task this worker doesn't have is an unknown task"),
        pytest.param(b'{"hello": "world"}', "application/json", {}, "undecodable",
                     id="a message without Celery headers is undecodable"),
        pytest.param(b'[[], {}]', "application/json", celery_headers("tests.charge"), "undecodable",
                     id="a body that is not [args, kwargs, embed] is undecodable"),
    ],
)  # fmt: skip
def test_a_message_celery_cannot_run_is_dead_lettered_from_the_handler(
    consumer: PlatformConsumer,
    broker: FakeBroker,
    taken: list[PlatformRequest],
    body: bytes,
    content_type: str,
    headers: dict[str, Any],
    error_class: str,
) -> None:
    """Given a message that can't be run, when the handler receives it, then it is
    dead-lettered with the reason, body byte for byte, acked after the confirm,
    and never reaches the pool."""
    message = delivery(broker, headers, body, content_type=content_type)

    consumer.create_task_handler()(message)

    dead = dead_letter_of(broker, message.delivery_tag)
    assert broker.published[0].body == body
    assert dead["x-error-class"] == error_class
    assert dead["x-error-message"]
    assert taken == []
