"""create_app(): the Celery configuration that enforces the lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from kombu import Exchange, Queue

from config.app import create_app, platform_config, route_by_module
from config.settings import load_settings

ENVIRON = {
    "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/unit",
    "PLATFORM_QUEUES": "orders,payments,email",
    "PLATFORM_DEFAULT_QUEUE": "misc",
    "PLATFORM_PUBLISH_TIMEOUT": "3",
    "PLATFORM_MAX_RETRIES": "4",
    "PLATFORM_MAX_UNKNOWN_RETRIES": "2",
    "PLATFORM_TASK_MODULES": "tasks.orders",
}


@pytest.fixture
def app() -> Iterator[Celery]:
    app = create_app(load_settings(ENVIRON), main="unit-test")
    yield app
    app.close()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("broker_url", ENVIRON["CELERY_BROKER_URL"], id="broker url from the settings"),
        pytest.param("task_acks_late", True, id="ack late"),
        pytest.param("task_reject_on_worker_lost", True, id="redeliver when the worker dies"),
        pytest.param("worker_prefetch_multiplier", 1, id="one message in flight per process"),
        pytest.param("accept_content", ["json"], id="json only accepted"),
        pytest.param("task_serializer", "json", id="json serializer"),
        pytest.param("result_accept_content", ["json"], id="json only for results"),
        pytest.param("task_default_delivery_mode", "persistent", id="persistent messages"),
        pytest.param("task_default_queue", "misc", id="default queue"),
        pytest.param("task_create_missing_queues", False, id="no queue created by accident"),
    ],
)
def test_the_app_enforces_the_lifecycle_settings(app: Celery, key: str, expected: Any) -> None:
    assert app.conf[key] == expected


def test_every_publish_waits_for_a_broker_confirm(app: Celery) -> None:
    options = app.conf.broker_transport_options
    assert options["confirm_publish"] is True
    assert options["confirm_timeout"] == 3.0


def test_task_queues_are_the_work_queues_and_the_default_queue(app: Celery) -> None:
    assert [queue.name for queue in app.conf.task_queues] == ["orders", "payments", "email", "misc"]


def test_each_queue_gets_as_many_delay_queues_as_the_most_retries(app: Celery) -> None:
    topology = platform_config(app).topology
    assert topology["orders"].retry_queues == tuple(f"orders.retry.{n}" for n in range(1, 5))


def test_the_default_settings_make_an_app_with_the_default_queues() -> None:
    app = create_app(load_settings({}), main="unit-test-defaults")
    try:
        assert [queue.name for queue in app.conf.task_queues] == [
            "orders",
            "payments",
            "inventory",
            "email",
            "analytics",
            "default",
        ]
    finally:
        app.close()


def via_tasks_exchange(queue: str) -> dict[str, str]:
    """A route to ``queue`` through the tasks exchange, the queue's name as routing key."""
    return {"queue": queue, "exchange": "platform.tasks", "routing_key": queue}


@pytest.mark.parametrize(
    ("task_name", "expected"),
    [
        pytest.param("tasks.orders.x", via_tasks_exchange("orders"), id="tasks.orders.x goes to orders"),
        pytest.param("tasks.payments.charge", via_tasks_exchange("payments"), id="payments"),
        pytest.param("tasks.email.send_receipt", via_tasks_exchange("email"), id="email"),
        pytest.param(
            "tasks.fraud.score", via_tasks_exchange("misc"), id="unknown module goes to the default"
        ),
        pytest.param("tasks.saga.step", via_tasks_exchange("misc"), id="saga module has no queue"),
        pytest.param("orders", via_tasks_exchange("misc"), id="a bare name is not a module"),
        pytest.param("celery.chord_unlock", via_tasks_exchange("misc"), id="celery's own tasks"),
    ],
)
def test_route_by_module_sends_a_task_to_its_module_queue(task_name: str, expected: Any) -> None:
    route = route_by_module(load_settings(ENVIRON))
    assert route(task_name, (), {}, {}) == expected


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"queue": "payments"}, via_tasks_exchange("payments"), id="the call's queue wins"),
        pytest.param(
            {"queue": Queue("email", Exchange("platform.tasks"))},
            via_tasks_exchange("email"),
            id="a kombu Queue",
        ),
        pytest.param({"routing_key": "payments"}, via_tasks_exchange("payments"), id="a direct routing key"),
        pytest.param(
            {"exchange": "platform.tasks", "routing_key": "email"},
            via_tasks_exchange("email"),
            id="exchange+key",
        ),
        pytest.param(
            {"routing_key": "nosuch"}, via_tasks_exchange("orders"), id="an unknown key: the module"
        ),
        pytest.param(
            {"exchange": "elsewhere", "routing_key": "x"}, None, id="another exchange is left alone"
        ),
        pytest.param({"queue": Queue("q", Exchange("elsewhere"))}, None, id="a foreign queue is left alone"),
    ],
)
def test_the_router_takes_the_calls_destination_over_the_module(
    options: dict[str, Any], expected: Any
) -> None:
    """queue= (or a routing key naming a platform queue) beats the module's queue."""
    route = route_by_module(load_settings(ENVIRON))
    assert route("tasks.orders.x", (), {}, options) == expected
