"""PlatformConsumer: rate-limited messages wait in the broker; refused messages get a FAILURE result.

A real PlatformConsumer (as in tests/unit/test_consumer_receipt.py) whose
publishes go to a fake broker; results go to Celery's in-process cache backend
(``cache+memory://``), read back as a client would, with ``AsyncResult``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import NotRegistered, WorkerLostError
from celery.worker import state
from kombu.exceptions import ContentDisallowed, DecodeError

from tests.unit.fakes import (
    FakeBroker,
    FakeEventer,
    celery_headers,
    delivery,
    install_fake_producers,
    unit_app,
    unstarted_consumer,
)
from workers.delivery.consumer import PlatformConsumer
from workers.delivery.headers import RATE_SLOT
from workers.delivery.rates import Slot
from workers.delivery.request import PlatformRequest

WORKER = "worker-1@host"


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def app(tmp_path: Path, broker: FakeBroker) -> Iterator[Celery]:
    """Two tasks: ``tests.limited`` (rate_limit 1/m) and ``tests.free``; an in-memory result backend."""
    app = unit_app(tmp_path, result_backend="cache+memory://")

    @app.task(name="tests.limited", rate_limit="1/m", shared=False)
    def limited() -> None: ...

    @app.task(name="tests.free", shared=False)
    def free() -> None: ...

    install_fake_producers(app, broker)
    yield app
    app.close()


@pytest.fixture
def taken() -> Iterator[list[PlatformRequest]]:
    requests: list[PlatformRequest] = []
    yield requests
    for request in requests:
        state.task_ready(request)


@pytest.fixture
def consumer(app: Celery, taken: list[PlatformRequest]) -> PlatformConsumer:
    """A real consumer, never started (tests/unit/fakes.py: unstarted_consumer)."""
    return unstarted_consumer(app, taken, WORKER)


def receive(consumer: PlatformConsumer, broker: FakeBroker, task: str, **headers: Any) -> Any:
    message = delivery(broker, celery_headers(task, **headers))
    consumer.create_task_handler()(message)
    return message


# -- rate limits -----------------------------------------------------------------------------


def test_celerys_own_bucket_is_never_used(consumer: PlatformConsumer) -> None:
    assert consumer.task_buckets["tests.limited"] is None
    assert consumer.rate_schedules.interval("tests.limited") == pytest.approx(60.0)


def test_a_message_over_the_rate_goes_to_the_delay_levels_with_its_slot_then_is_acked(
    consumer: PlatformConsumer, broker: FakeBroker, taken: list[PlatformRequest]
) -> None:
    """Given a 1/m task, the first message is passed on to the pool; the second
    is copied to the delay levels carrying its slot a minute ahead, and only then
    acked; a message of another task is passed on at once."""
    first = receive(consumer, broker, "tests.limited")
    second = receive(consumer, broker, "tests.limited")
    other = receive(consumer, broker, "tests.free")

    assert [request.name for request in taken] == ["tests.limited", "tests.free"]
    publish, ack = broker.history
    assert publish.startswith("publish platform.delay.") and publish.endswith(".orders")
    assert ack == f"ack {second.delivery_tag}"
    [copy] = broker.published
    slot = Slot.parse(copy.headers[RATE_SLOT])
    assert slot is not None and slot.worker == WORKER
    assert broker.settlement(first.delivery_tag) is None and broker.settlement(other.delivery_tag) is None


def test_a_message_back_at_its_slot_is_passed_on_without_its_slot_header(
    consumer: PlatformConsumer, broker: FakeBroker, taken: list[PlatformRequest]
) -> None:
    receive(consumer, broker, "tests.limited")
    receive(consumer, broker, "tests.limited")
    [copy] = broker.published
    slot = Slot.parse(copy.headers[RATE_SLOT])
    assert slot is not None

    back = receive(consumer, broker, "tests.limited", **{RATE_SLOT: Slot(WORKER, slot.at - 60).header()})

    assert len(taken) == 2
    assert RATE_SLOT not in back.headers  # a retry or dead letter of it carries no slot


def test_celery_control_rate_limit_reaches_the_schedule(consumer: PlatformConsumer, app: Celery) -> None:
    """What ``celery control rate_limit`` does: set task.rate_limit, then reset_rate_limits."""
    app.tasks["tests.limited"].rate_limit = "100/s"
    consumer.reset_rate_limits()
    assert consumer.rate_schedules.interval("tests.limited") == pytest.approx(0.01)
    app.tasks["tests.limited"].rate_limit = None
    consumer.reset_rate_limits()
    assert consumer.rate_schedules.interval("tests.limited") is None


def test_without_rate_limits_every_message_is_passed_on(
    consumer: PlatformConsumer, broker: FakeBroker, taken: list[PlatformRequest]
) -> None:
    consumer.disable_rate_limits = True
    for _ in range(3):
        receive(consumer, broker, "tests.limited")
    assert len(taken) == 3 and broker.published == []


# -- results of refusals ---------------------------------------------------------------------


REFUSALS = [
    pytest.param(lambda c, m: c.create_task_handler()(m), {"x-delivery-count": 3}, WorkerLostError,
                 "the 3 earlier deliveries ended without an ack", id="poison: WorkerLostError"),
    pytest.param(lambda c, m: c.on_unknown_task(None, m, NotRegistered("tests.gone")), {}, NotRegistered,
                 "tests.charge", id="unknown task: NotRegistered"),
    pytest.param(lambda c, m: c.on_decode_error(m, ContentDisallowed("refusing to deserialize pickle")), {},
                 ContentDisallowed, "pickle", id="disallowed: ContentDisallowed"),
    pytest.param(lambda c, m: c.create_task_handler()(m), {"retries": "x"}, DecodeError, "InvalidHeader",
                 id="a header of the wrong type: DecodeError"),
]  # fmt: skip


@pytest.mark.parametrize(("refuse", "headers", "error", "text"), REFUSALS)
def test_a_refused_task_has_a_failure_result_and_a_task_failed_event(
    consumer: PlatformConsumer,
    broker: FakeBroker,
    app: Celery,
    refuse: Any,
    headers: dict[str, Any],
    error: type[Exception],
    text: str,
) -> None:
    """Given a result backend, a message refused on receipt is dead-lettered
    and then its result says FAILURE with an exception a client can act on."""
    consumer.event_dispatcher = FakeEventer()
    message = delivery(broker, celery_headers("tests.charge", **headers))

    refuse(consumer, message)

    assert broker.history == ["publish platform.dlx/orders", f"ack {message.delivery_tag}"]
    result = app.AsyncResult(message.headers["id"])
    assert result.state == "FAILURE"
    assert isinstance(result.result, error) and text in str(result.result)
    assert consumer.event_dispatcher.sent == ["task-failed"]


def test_no_result_is_stored_before_the_dead_letter_is_confirmed(
    consumer: PlatformConsumer, broker: FakeBroker, app: Celery
) -> None:
    """If the DLQ copy is not confirmed the message goes back to the broker,
    and its result is left alone (it will be delivered again)."""
    broker.refuse(OSError("connection reset"))
    message = delivery(broker, celery_headers("tests.charge", **{"x-delivery-count": 3}))

    consumer.create_task_handler()(message)

    assert broker.history == [f"requeue {message.delivery_tag}"]
    assert app.AsyncResult(message.headers["id"]).state == "PENDING"


def test_a_broken_result_backend_never_breaks_the_consumer(
    consumer: PlatformConsumer, broker: FakeBroker, app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(app.backend, "mark_as_failure", broken)
    message = delivery(broker, celery_headers("tests.charge", **{"x-delivery-count": 3}))

    consumer.create_task_handler()(message)

    assert broker.history == ["publish platform.dlx/orders", f"ack {message.delivery_tag}"]


def test_a_task_with_ignore_result_gets_no_result(
    consumer: PlatformConsumer, broker: FakeBroker, app: Celery
) -> None:
    message = delivery(broker, celery_headers("tests.charge", ignore_result=True, **{"x-delivery-count": 3}))
    consumer.create_task_handler()(message)
    assert app.AsyncResult(message.headers["id"]).state == "PENDING"
