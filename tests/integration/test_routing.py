"""Routing: where published tasks go, who enqueues without the platform, and queues nobody consumes.

Against a real RabbitMQ (a vhost per test) with real worker processes:

- every publish path of the platform's app goes through the ``platform.tasks``
  exchange with the queue's name as routing key, so a dead letter's
  ``x-original-exchange`` says ``platform.tasks`` (the README's architecture);
- a stock Celery app that never imports the platform enqueues with the README's
  recipe, and a platform worker gives its tasks the whole lifecycle;
- a queue holding ready messages with no consumer is a metric and an alert.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.app import platform_config
from config.topology import TASKS_EXCHANGE
from tests.e2e.conftest import management_url
from tests.integration.test_dlq_alerts import Receiver
from tests.support.ledger import events
from tests.support.messages import celery_message, header
from tests.support.wait import wait_for
from tests.support.worker import ROOT
from workers.broker import declare_topology

pytestmark = pytest.mark.broker


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """A Slack-like webhook receiver on a free local port."""
    hook = Receiver()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def client_task(client, name: str):
    """The client's task ``name`` (the workers run it); registered once per app."""
    if name not in client.tasks:

        @client.task(name=name, shared=False)
        def body(*args: object, **kwargs: object) -> None: ...

    return client.tasks[name]


def delivered_through(vhost, queue: str) -> list[tuple[str, str]]:
    """(exchange, routing key) of every message taken from ``queue``."""
    return [
        (message.delivery_info["exchange"], message.delivery_info["routing_key"])
        for message in vhost.take_all(queue)
    ]


def test_every_publish_path_goes_through_the_platform_exchange_with_the_queue_as_routing_key(vhost, client):
    """Given the topology and no worker: apply_async, send_task, a signature and
    apply_many, each to payments by queue=, and a send_task routed by default, all
    reach their queue through platform.tasks with the queue's name as routing key
    (never the default exchange)."""
    with client.connection_for_write() as connection:
        declare_topology(connection, platform_config(client).topology)
    ok = client_task(client, "tests.ok")

    ok.apply_async(args=[1], queue="payments")
    client.send_task("tests.ok", args=[2], queue="payments")
    client.signature("tests.ok", args=[3]).apply_async(queue="payments")
    ok.apply_many([((4,), {}), ((5,), {})], queue="payments")
    client.send_task("tests.ok", args=[6])  # no module queue: the default queue

    assert delivered_through(vhost, "payments") == [(TASKS_EXCHANGE, "payments")] * 5
    assert delivered_through(vhost, "default") == [(TASKS_EXCHANGE, "default")]


def test_a_stock_celery_producer_enqueues_with_the_recipe_and_its_tasks_get_the_lifecycle(
    vhost, client, start_worker, tmp_path: Path
):
    """Given a platform worker on orders: a stock Celery app that imports nothing
    of the platform (tests/support/plain_producer.py, the README's recipe)
    publishes three tasks without declaring anything: the one that succeeds runs
    once, the one failing once with a transient error is retried and then
    succeeds, the permanent failure is dead-lettered at once with the origin
    platform.tasks/orders. A permanent failure published by the platform's own
    apply_async says the same origin."""
    ledger = tmp_path / "ledger.txt"
    start_worker(queues="orders", concurrency=1)
    produced = subprocess.run(
        [sys.executable, "-m", "tests.support.plain_producer", vhost.url, "orders,payments,default"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    ids = json.loads(produced.stdout)
    own = client_task(client, "tests.permanent").apply_async(queue="orders").id

    wait_for(lambda: vhost.depth("orders.dlq") == 2, message="the two permanent failures' dead letters")
    wait_for(lambda: events(ledger, "done", ids["flaky"]), message="the flaky task to succeed on its retry")
    assert len(events(ledger, "done", ids["ok"])) == 1
    assert [entry.extra for entry in events(ledger, "attempt", ids["flaky"])] == ["0", "1"]
    dead = {header(message, "x-task-id"): message for message in vhost.take_all("orders.dlq")}
    assert set(dead) == {ids["permanent"], own}
    for message in dead.values():
        assert header(message, "x-error-class") == "permanent"
        assert header(message, "x-original-queue") == "orders"
        assert header(message, "x-original-exchange") == TASKS_EXCHANGE
        assert header(message, "x-original-routing-key") == "orders"
    assert len(events(ledger, "attempt", ids["permanent"])) == 1


def test_a_queue_with_ready_messages_and_no_consumer_is_a_metric_and_an_alert(
    vhost, platform_env: dict[str, str], tmp_path: Path, webhook: Receiver
):
    """Given two ready tasks on payments, which nobody consumes, and orders with a
    consumer: the metrics say platform_queue_without_consumer 1 for payments and
    0 for orders (and for the empty default queue); one alert check posts that
    payments has 2 ready messages and no consumer, and nothing about orders."""
    from config.app import create_app
    from config.settings import load_settings
    from workers.ops.metrics import collect

    env = {
        **platform_env,
        "PLATFORM_MANAGEMENT_URL": management_url(),
        "PLATFORM_RUN_DIR": str(tmp_path / "run"),
        "PLATFORM_ALERT_WEBHOOK_URL": webhook.url,
        "PLATFORM_ALERT_NO_CONSUMER_AFTER": "0",
    }
    settings = load_settings(env)
    app = create_app(settings, main="test-routing-metrics")
    topology = platform_config(app).topology
    with app.connection_for_write() as connection:
        declare_topology(connection, topology)
    app.close()
    body, headers = celery_message("tests.ok")
    for _ in range(2):
        vhost.publish("payments", body, headers=headers, exchange=TASKS_EXCHANGE)
        vhost.publish("orders", body, headers=headers, exchange=TASKS_EXCHANGE)
    with vhost.connect() as consumer:
        channel = consumer.channel()
        channel.basic_qos(0, 1, False)
        channel.basic_consume("orders", callback=lambda message: None)

        samples = collect(settings, topology)
        without = {
            sample.labels["queue"]: sample.value
            for sample in samples
            if sample.name == "platform_queue_without_consumer"
        }
        assert without == {"orders": 0, "payments": 1, "default": 0}

        checked = subprocess.run(
            [sys.executable, "-m", "workers.ops.alerts", "--once"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert checked.returncode == 0, checked.stderr
    texts = webhook.texts()
    assert len(texts) == 1, texts
    assert "payments has 2 ready messages and no consumer" in texts[0]
    assert "PLATFORM_QUEUES" in texts[0] or "make up" in texts[0]
