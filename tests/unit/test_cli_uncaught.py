"""What Celery's own commands print for the errors they let through (workers.ops.cli.uncaught)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery
from celery.exceptions import ImproperlyConfigured, QueueNotFound
from kombu.exceptions import OperationalError

from config.app import create_app
from config.settings import load_settings
from workers.delivery.delays import DelayError
from workers.errors import PublishError
from workers.ops.cli.uncaught import describe


@pytest.fixture(scope="module")
def app() -> Iterator[Celery]:
    app = create_app(
        load_settings(
            {"CELERY_BROKER_URL": "amqp://ops:s3cret@rabbit:5672/prod", "PLATFORM_QUEUES": "orders,payments"}
        ),
        main="unit-uncaught",
    )
    yield app
    app.close()


def chained(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


CASES = [
    pytest.param(
        QueueNotFound("Queue 'nosuch' missing from task_queues"),
        4,
        "unknown queue 'nosuch': the platform's queues are orders, payments, default",
        id="celery call --queue nosuch",
    ),
    pytest.param(
        ImproperlyConfigured(
            "Trying to select queue subset of ['nosuch'], but queue 'nosuch' isn't\n"
            "defined in the `task_queues` setting."
        ),
        4,
        "unknown queue 'nosuch'",
        id="celery worker -Q nosuch",
    ),
    pytest.param(
        OperationalError("[Errno 111] Connection refused"),
        3,
        "broker unreachable at amqp://ops:**@rabbit:5672/prod: [Errno 111] Connection refused",
        id="broker down",
    ),
    pytest.param(
        chained(PublishError("could not publish to orders"), ConnectionRefusedError(111, "refused")),
        3,
        "broker unreachable at amqp://ops:**@rabbit:5672/prod",
        id="a publish error caused by a refused connection",
    ),
    pytest.param(
        PublishError(
            "publish to platform.tasks/orders not confirmed within 5.0s (amqp://ops:s3cret@rabbit//)"
        ),
        6,
        "publish failed: publish to platform.tasks/orders not confirmed within 5.0s (amqp://ops:**@rabbit//)",
        id="a publish not confirmed, its URL masked",
    ),
    pytest.param(DelayError("countdown must be >= 0"), 2, "countdown must be >= 0", id="a bad countdown"),
]


@pytest.mark.parametrize(("exc", "code", "line"), CASES)
def test_each_error_an_operator_can_act_on_is_one_line_and_its_exit_code(
    app: Celery, exc: BaseException, code: int, line: str
) -> None:
    described = describe(exc, app)
    assert described is not None
    message, exit_code = described
    assert exit_code == code
    assert message.startswith(line) and "s3cret" not in message


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(ZeroDivisionError("bug"), id="a bug"),
        pytest.param(ImproperlyConfigured("something else"), id="another configuration error"),
        pytest.param(KeyError("x"), id="a KeyError that is not QueueNotFound"),
        pytest.param(
            chained(ValueError("bug in a handler"), OperationalError("x")), id="a bug while handling"
        ),
    ],
)
def test_anything_else_keeps_its_traceback(app: Celery, exc: BaseException) -> None:
    assert describe(exc, app) is None
