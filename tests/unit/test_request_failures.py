"""PlatformRequest.on_failure: every kind of failure that reaches the worker's main process.

The request is Celery's own, built around a real kombu message on a fake
channel, the way Celery's strategy builds it (tests/unit/fakes.py); the
lifecycle behind it publishes to a fake producer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from amqp.exceptions import MessageNacked
from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from celery import Celery
from celery.exceptions import Ignore, Reject, Terminated, TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request
from kombu.message import Message

from tests.unit.fakes import (
    FakeBroker,
    FakeEventer,
    celery_headers,
    delivery,
    install_fake_producers,
    unit_app,
)
from workers.delivery.headers import Failure
from workers.delivery.lifecycle import Lifecycle, install_lifecycle
from workers.delivery.request import PlatformRequest
from workers.delivery.verdict import DeadLetterNow, RetryLater

TIMEOUT = Failure("transient", "TimeoutError", "read timed out", "Traceback ...\nTimeoutError\n")
INVALID = Failure("permanent", "workers.errors.PermanentError", "amount must be positive", "Traceback ...\n")


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def app(tmp_path: Path, broker: FakeBroker) -> Iterator[Celery]:
    """max_retries 3, max_unknown_retries 1, retry_base 1 s, no jitter (tests/unit/fakes.py).

    Tasks are declared with ``shared=False``: a shared task would be added to
    every app created afterwards, and redeclaring it warns.
    """
    app = unit_app(tmp_path)

    @app.task(name="tests.charge", bind=True, shared=False)
    def charge(self: Any) -> None: ...

    @app.task(name="tests.lookup", bind=True, shared=False, permanent_errors=(LookupError,))
    def lookup(self: Any) -> None: ...

    @app.task(name="tests.slow", bind=True, shared=False, transient_errors=(TimeLimitExceeded,))
    def slow(self: Any) -> None: ...

    install_fake_producers(app, broker)
    install_lifecycle(app, Lifecycle(app, "worker-1@host", lambda: {"ctag-orders": "orders"}))
    yield app
    app.close()


@pytest.fixture
def eventer() -> FakeEventer:
    return FakeEventer()


def received(
    app: Celery, broker: FakeBroker, eventer: FakeEventer, task: str = "tests.charge", retries: int = 0
) -> tuple[Request, Message]:
    """A delivery from ``orders`` and the request Celery's strategy would build for it."""
    message = delivery(broker, celery_headers(task, retries=retries, **{"x-retry-count": retries}))
    request = PlatformRequest(
        message,
        on_ack=message.ack_log_error,
        on_reject=message.reject_log_error,
        app=app,
        task=app.tasks[task],
        hostname="worker-1@host",
        eventer=eventer,
    )
    return request, message


def raised(exc: BaseException, from_pool: bool = False) -> ExceptionInfo:
    """What the pool reports: an ExceptionInfo (wrapped as a prefork child sends it)."""
    try:
        raise exc
    except BaseException:  # noqa: BLE001 - capturing any exception is the point
        info = ExceptionInfo()
    if from_pool:
        info.exception = ExceptionWithTraceback(exc, info.traceback)
    return info


# -- verdicts and failures decided in the main process --------------------------------


@pytest.mark.parametrize(
    ("exc", "task", "retries", "where", "expiration", "error_class", "error_type", "retry_count", "event"),
    [
        pytest.param(RetryLater(TIMEOUT, 2.5, 1), "tests.charge", 0, "(default)/orders.retry.1", 2.5,
                     "transient", "TimeoutError", 1, "task-retried",
                     id="a RetryLater verdict goes to its delay queue with its delay"),
        pytest.param(DeadLetterNow(INVALID, 0), "tests.charge", 0, "platform.dlx/orders", None,
                     "permanent", "workers.errors.PermanentError", 0, "task-failed",
                     id="a DeadLetterNow verdict goes to the DLQ"),
        pytest.param(TimeLimitExceeded(30), "tests.charge", 0, "(default)/orders.retry.1", 1.0,
                     "unknown", "billiard.exceptions.TimeLimitExceeded", 1, "task-retried",
                     id="a hard time limit is unknown: retried with the first backoff"),
        pytest.param(TimeLimitExceeded(30), "tests.charge", 1, "platform.dlx/orders", None,
                     "unknown", "billiard.exceptions.TimeLimitExceeded", 1, "task-failed",
                     id="a hard time limit with unknown retries exhausted is dead-lettered"),
        pytest.param(TimeLimitExceeded(30), "tests.slow", 2, "(default)/orders.retry.3", 4.0,
                     "transient", "billiard.exceptions.TimeLimitExceeded", 3, "task-retried",
                     id="a task that declares its hard time limit transient gets transient retries"),
        pytest.param(RuntimeError("pool crashed oddly"), "tests.charge", 0, "(default)/orders.retry.1", 1.0,
                     "unknown", "RuntimeError", 1, "task-retried",
                     id="an unclassified exception is unknown: retried"),
        pytest.param(RuntimeError("pool crashed oddly"), "tests.charge", 1, "platform.dlx/orders", None,
                     "unknown", "RuntimeError", 1, "task-failed",
                     id="an unclassified exception with unknown retries exhausted is dead-lettered"),
        pytest.param(KeyError("sku-1"), "tests.lookup", 0, "platform.dlx/orders", None,
                     "permanent", "KeyError", 0, "task-failed",
                     id="the task's own rules decide: its permanent LookupError dead-letters at once"),
        pytest.param(KeyError("sku-1"), "tests.charge", 0, "(default)/orders.retry.1", 1.0,
                     "unknown", "KeyError", 1, "task-retried",
                     id="another task's rules do not apply: the same KeyError is unknown"),
    ],
)  # fmt: skip
@pytest.mark.parametrize(
    "from_pool", [False, True], ids=["raised in the main process", "sent by a pool child"]
)
def test_a_failure_is_republished_with_a_confirm_and_then_acked(
    app: Celery,
    broker: FakeBroker,
    eventer: FakeEventer,
    exc: BaseException,
    task: str,
    retries: int,
    where: str,
    expiration: float | None,
    error_class: str,
    error_type: str,
    retry_count: int,
    event: str,
    from_pool: bool,
) -> None:
    """Given a request for a message with ``retries`` earlier retries, when its
    failure reaches on_failure, then the message is copied (retry or dead letter,
    as the verdict or the task's own classifier rules say), the original is acked
    only after the confirm, and Flower hears of the retry or the failure."""
    request, message = received(app, broker, eventer, task, retries)

    request.on_failure(raised(exc, from_pool), return_ok=from_pool)

    assert broker.history == [f"publish {where}", f"ack {message.delivery_tag}"]
    [copy] = broker.published
    assert copy.body == message.body
    assert copy.expiration == expiration
    assert copy.headers["x-error-class"] == error_class
    assert copy.headers["x-error-type"] == error_type
    assert copy.headers["x-retry-count"] == retry_count
    assert copy.headers["x-task-name"] == task
    assert eventer.sent == [event]


def test_a_failure_decided_in_the_main_process_keeps_its_traceback(
    app: Celery, broker: FakeBroker, eventer: FakeEventer
) -> None:
    """A hard time limit's dead letter carries the traceback the pool reported."""
    request, _ = received(app, broker, eventer, retries=3)

    request.on_failure(raised(TimeLimitExceeded(30)))

    [copy] = broker.published
    assert "TimeLimitExceeded" in copy.headers["x-error-traceback"]
    assert copy.headers["x-error-message"] == "TimeLimitExceeded(30,)"


# -- an unconfirmed republish ------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(RetryLater(TIMEOUT, 2.5, 1), id="a retry"),
        pytest.param(DeadLetterNow(INVALID, 0), id="a dead letter"),
        pytest.param(TimeLimitExceeded(30), id="a hard time limit"),
    ],
)
def test_an_unconfirmed_republish_requeues_the_message_instead_of_acking(
    app: Celery, broker: FakeBroker, eventer: FakeEventer, exc: BaseException
) -> None:
    """Given a broker that nacks the copy, when a failure is settled, then the
    original is requeued, not acked: nothing is lost, and no retry or failure
    is announced."""
    broker.refuse(MessageNacked())
    request, message = received(app, broker, eventer)

    request.on_failure(raised(exc))

    assert broker.history == [f"requeue {message.delivery_tag}"]
    assert eventer.sent == ["task-rejected"]


# -- what Celery handles itself ------------------------------------------------------------


def stock_outcome(app: Celery, exc: BaseException) -> tuple[list[str], list[str]]:
    """What stock Celery's Request.on_failure does with ``exc`` on a twin delivery."""
    broker, eventer = FakeBroker(), FakeEventer()
    message = delivery(broker, celery_headers("tests.charge"))
    stock = Request(
        message,
        on_ack=message.ack_log_error,
        on_reject=message.reject_log_error,
        app=app,
        task=app.tasks["tests.charge"],
        hostname="worker-1@host",
        eventer=eventer,
    )
    stock.on_failure(raised(exc))
    return broker.history, eventer.sent


@pytest.mark.parametrize(
    ("make_exc", "history"),
    [
        pytest.param(lambda: WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)."), ["requeue 1"],
                     id="a lost pool process: requeued for redelivery"),
        pytest.param(lambda: SystemExit(1), ["requeue 1"], id="a pool child's exit: requeued for redelivery"),
        pytest.param(lambda: Terminated("SIGTERM"), ["ack 1"], id="a terminated task: revoked"),
        pytest.param(lambda: Ignore(), ["ack 1"], id="Ignore: acked"),
        pytest.param(lambda: Reject("no", requeue=True), ["requeue 1"], id="Reject with requeue: requeued"),
        pytest.param(lambda: Reject("no", requeue=False), ["reject 1"], id="Reject without requeue: rejected"),
    ],
)  # fmt: skip
def test_what_celery_handles_itself_is_settled_as_stock_celery_settles_it(
    app: Celery,
    broker: FakeBroker,
    eventer: FakeEventer,
    make_exc: Callable[[], BaseException],
    history: list[str],
) -> None:
    """Given a lost pool process or one of Celery's control exceptions, on_failure
    publishes nothing and settles the delivery exactly as stock Celery does."""
    request, _ = received(app, broker, eventer)

    request.on_failure(raised(make_exc()))

    assert broker.published == []
    assert broker.history == history
    assert (broker.history, eventer.sent) == stock_outcome(app, make_exc())


# -- settling that breaks ----------------------------------------------------------------


def test_a_failure_that_cannot_be_settled_gives_the_delivery_back(
    tmp_path: Path, eventer: FakeEventer
) -> None:
    """Given a worker whose lifecycle is missing (its consumer is not the platform's),
    when a verdict arrives, then nothing is published and the delivery goes back
    to the broker instead of staying unacknowledged."""
    broker = FakeBroker()
    app = unit_app(tmp_path, main="no-lifecycle")

    @app.task(name="tests.charge", bind=True, shared=False)
    def charge(self: Any) -> None: ...

    install_fake_producers(app, broker)
    try:
        request, message = received(app, broker, eventer)

        request.on_failure(raised(RetryLater(TIMEOUT, 2.5, 1)))

        assert broker.history == [f"requeue {message.delivery_tag}"]
        assert broker.published == []
    finally:
        app.close()
