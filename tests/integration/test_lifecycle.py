"""The lifecycle of a delivery, end to end: late ack, lost workers, refusals, publishing.

Real RabbitMQ (a fresh vhost per test), real ``celery worker`` processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.app import create_app, platform_config
from config.settings import load_settings
from tests.support.ledger import events
from tests.support.messages import celery_message, header
from tests.support.wait import wait_for
from tests.support.worker import ROOT
from workers.broker import declare_topology
from workers.errors import PublishError

pytestmark = pytest.mark.broker


def test_the_ack_comes_only_after_the_body_returns(vhost, client, start_worker, tmp_path: Path):
    """Given a task still running, when its worker is SIGKILLed before the body
    returns, then the message is back in the queue and a new worker completes it."""
    ledger = tmp_path / "ledger.txt"
    worker = start_worker()
    result = client.send_task("tests.slow", args=[3], queue="orders")
    wait_for(lambda: events(ledger, "start", result.id), message="the task to start")
    worker.kill_main()
    assert not events(ledger, "done", result.id)
    wait_for(lambda: vhost.depth("orders") == 1, message="the message to be back in orders")

    start_worker()
    wait_for(
        lambda: events(ledger, "done", result.id), timeout=30, message="the redelivered task to complete"
    )
    wait_for(lambda: vhost.depth("orders") == 0, message="orders to be empty")
    assert vhost.depth("orders.dlq") == 0


def test_a_killed_pool_process_means_redelivery_not_loss(vhost, client, start_worker, tmp_path: Path):
    """When the prefork child running a task is SIGKILLed, the message is
    requeued (not acked) and runs again to completion."""
    ledger = tmp_path / "ledger.txt"
    worker = start_worker()
    result = client.send_task("tests.slow", args=[2], queue="orders")
    first = wait_for(lambda: events(ledger, "start", result.id), message="the task to start")
    assert len(first) == 1, "one attempt is running when the pool processes are killed"
    children = wait_for(worker.child_pids, message="pool processes")
    for pid in children:  # the one running the task is among them
        os.kill(pid, signal.SIGKILL)
    assert not events(ledger, "done", result.id), "the first attempt was killed before its body returned"
    wait_for(
        lambda: events(ledger, "done", result.id), timeout=40, message="the task to complete after the kill"
    )
    assert len(events(ledger, "start", result.id)) == 2
    assert len(events(ledger, "done", result.id)) == 1
    wait_for(lambda: vhost.depth("orders") == 0, message="orders to be empty")
    assert vhost.depth("orders.dlq") == 0


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "error_class"),
    [
        pytest.param(b'{"not": json', "application/json", "celery", "undecodable", id="invalid-json"),
        pytest.param(
            b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94.",
            "application/x-python-serialize",
            "celery",
            "disallowed",
            id="pickle",
        ),
        pytest.param(b"[[], {}, {}]", "application/json", "unknown-task", "unknown-task", id="unknown-task"),
        pytest.param(b'{"hello": "world"}', "application/json", None, "undecodable", id="no-celery-headers"),
    ],
)
def test_a_message_that_cannot_run_is_dead_lettered_with_its_body(
    vhost, start_worker, body: bytes, content_type: str, headers: str | None, error_class: str
):
    """Nothing is dropped on receipt: the message lands in orders.dlq, body byte
    for byte, with the reason in x-error-class, and the worker keeps working."""
    start_worker()
    if headers == "celery":
        _, message_headers = celery_message("tests.ok")
    elif headers == "unknown-task":
        _, message_headers = celery_message("tests.no_such_task")
    else:
        message_headers = {}
    vhost.publish("orders", body, content_type=content_type, headers=message_headers)
    wait_for(lambda: vhost.depth("orders.dlq") == 1, message="the message in orders.dlq")
    [dead] = vhost.take_all("orders.dlq")
    assert dead.body == body
    assert header(dead, "x-error-class") == error_class
    assert header(dead, "x-original-queue") == "orders"
    assert header(dead, "x-error-message")
    assert vhost.depth("orders") == 0


def test_stock_celery_loses_an_undecodable_message_where_the_platform_keeps_it(
    vhost, platform_env, start_worker, tmp_path: Path
):
    """Side by side: stock Celery acks invalid JSON and it is gone; the platform
    dead-letters the same bytes."""
    log = tmp_path / "stock.log"
    env = {**platform_env, "STOCK_BROKER_URL": vhost.url}
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        stock = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.support.stock_app", "worker", "-c", "1", "-l", "info",
             "--without-mingle", "--without-gossip", "-n", "stock@%h"],
            env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: " ready." in log.read_text(), timeout=60, message="the stock worker to start")
        _, headers = celery_message("stock.noop")
        vhost.publish("stock", b'{"broken', headers=headers)
        wait_for(lambda: "decode" in log.read_text().lower(), message="stock Celery to log the decode error")
        wait_for(lambda: vhost.depth("stock") == 0, message="the stock queue to be empty")
    finally:
        os.killpg(stock.pid, signal.SIGTERM)
        stock.wait(timeout=30)
    assert vhost.depth("stock") == 0  # acked and lost: no DLQ, no trace but a log line

    start_worker()
    _, headers = celery_message("tests.ok")
    vhost.publish("orders", b'{"broken', headers=headers)
    wait_for(lambda: vhost.depth("orders.dlq") == 1, message="the platform to dead-letter it")
    [dead] = vhost.take_all("orders.dlq")
    assert dead.body == b'{"broken'


def test_publishing_with_the_broker_unreachable_raises_a_clear_error_quickly(tmp_path: Path):
    """A publish to a broker nobody listens on raises PublishError naming the
    broker within a bounded time, instead of hanging or dropping the task."""
    settings = load_settings(
        {"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//", "PLATFORM_PUBLISH_TIMEOUT": "2"}
    )
    app = create_app(settings, main="unreachable")

    @app.task(name="tests.ok", shared=False)
    def ok() -> None: ...

    started = time.monotonic()
    with pytest.raises(PublishError, match=r"127\.0\.0\.1:1"):
        ok.delay()
    assert time.monotonic() - started < 15


def test_an_unroutable_publish_raises_instead_of_vanishing(vhost, client):
    """With mandatory publishing and confirms, a message no queue takes is an
    error for the publisher, not a silent drop."""

    @client.task(name="tests.ok", shared=False)
    def ok() -> None: ...

    with client.connection_for_write() as connection:
        declare_topology(connection, platform_config(client).topology)
    with pytest.raises(PublishError, match="NO_ROUTE"):
        ok.apply_async(exchange="platform.tasks", routing_key="no-such-queue", declare=[])


def test_delay_returns_only_once_the_broker_has_the_message(vhost, client):
    """delay() is confirmed: right after it returns the message is in the queue."""

    @client.task(name="tests.ok", shared=False)
    def ok() -> None: ...

    for expected in (1, 2, 3):
        ok.delay()  # the first publish also declares the queue
        assert vhost.depth("default") == expected
