"""Malformed messages on receipt: each one ends in the DLQ with a reason, and the worker goes on.

Every case here was lost or wedged a worker before the receipt checks
(workers/delivery/receipt.py, workers/delivery/frames.py). Real RabbitMQ (a
fresh vhost per test), real ``celery worker`` processes, raw AMQP publishes
with exact bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.app import platform_config
from tests.support.ledger import events
from tests.support.messages import celery_message, header
from tests.support.wait import wait_for
from workers.broker import declare_topology

pytestmark = pytest.mark.broker

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def still_working(vhost, worker, ledger: Path) -> None:
    """The worker kept its pid and still runs a valid task (nothing wedged)."""
    pid = worker.pid
    body, headers = celery_message("tests.ok")
    vhost.publish("orders", body, headers=headers)
    wait_for(
        lambda: events(ledger, "done", headers["id"]), timeout=20, message="a valid task to run afterwards"
    )
    assert worker.process.poll() is None and worker.pid == pid


def refused(vhost, count: int = 1) -> list[Any]:
    wait_for(
        lambda: vhost.depth("orders.dlq") == count, timeout=20, message=f"{count} dead letters in orders.dlq"
    )
    return vhost.take_all("orders.dlq")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        pytest.param(b"[[], null, {}]", "kwargs", id="kwargs-null"),
        pytest.param(b"[[], [], {}]", "kwargs", id="kwargs-a-list"),
        pytest.param(b"[{}, {}, {}]", "args", id="args-a-table"),
        pytest.param(b"[[], {}, [1]]", "embed", id="embed-a-list"),
    ],
)
def test_a_body_with_wrong_inner_types_is_dead_lettered_not_acked_as_success(
    vhost, start_worker, tmp_path: Path, body: bytes, named: str
):
    """Given a body of the right outline but a wrong inner type, it lands in
    orders.dlq as undecodable, body byte for byte, naming the part; the task never ran."""
    worker = start_worker()
    _, headers = celery_message("tests.ok")
    vhost.publish("orders", body, headers=headers)
    [dead] = refused(vhost)
    assert dead.body == body
    assert header(dead, "x-error-class") == "undecodable"
    assert named in header(dead, "x-error-message")
    assert not events(tmp_path / "ledger.txt", "done", headers["id"])
    still_working(vhost, worker, tmp_path / "ledger.txt")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("timelimit", ["abc", None], id="timelimit-text"),
        pytest.param("timelimit", [1], id="timelimit-one-number"),
        pytest.param("retries", "x", id="retries-text"),
        pytest.param("retries", -1, id="retries-negative"),
        pytest.param("id", 42, id="id-a-number"),
        pytest.param("argsrepr", "x" * 70_000, id="argsrepr-huge"),
        pytest.param("expires", "not a time", id="expires-garbage"),
        pytest.param("eta", "tomorrow", id="eta-garbage"),
        pytest.param("x-delivery-count", "many", id="delivery-count-text"),
    ],
)
def test_a_header_of_the_wrong_type_is_dead_lettered_naming_the_header(
    vhost, start_worker, tmp_path: Path, name: str, value: Any
):
    """Given a task message whose header has a value Celery can't use, it is
    dead-lettered on receipt as undecodable with the header named, before it can
    take a pool slot, and the worker goes on."""
    worker = start_worker()
    body, headers = celery_message("tests.unknown")  # a task that fails: the failure path is not reached
    headers[name] = value
    vhost.publish("orders", body, headers=headers)
    [dead] = refused(vhost)
    assert dead.body == body
    assert header(dead, "x-error-class") == "undecodable"
    assert repr(name) in header(dead, "x-error-message")
    assert not events(
        tmp_path / "ledger.txt", "attempt", headers["id"] if isinstance(headers["id"], str) else ""
    )
    still_working(vhost, worker, tmp_path / "ledger.txt")


def test_bad_time_limits_do_not_wedge_a_worker_whose_pool_is_full(vhost, start_worker, tmp_path: Path):
    """Given a worker with two pool processes, when three messages with a
    timelimit of text arrive, then all three are dead-lettered and the pool
    still has both slots (valid tasks run afterwards)."""
    worker = start_worker(concurrency=2)
    for _ in range(3):
        body, headers = celery_message("tests.ok")
        headers["timelimit"] = ["abc", None]
        vhost.publish("orders", body, headers=headers)
    assert len(refused(vhost, 3)) == 3
    ledger = tmp_path / "ledger.txt"
    ids = []
    for _ in range(4):
        body, headers = celery_message("tests.ok")
        vhost.publish("orders", body, headers=headers)
        ids.append(headers["id"])
    wait_for(
        lambda: all(events(ledger, "done", task_id) for task_id in ids), timeout=20, message="4 valid tasks"
    )
    assert worker.process.poll() is None


def test_a_message_already_expired_on_the_wire_is_dead_lettered_as_expired(
    vhost, start_worker, tmp_path: Path
):
    """Given a task whose expires time passed before it was delivered, it goes to
    orders.dlq as expired (stock Celery acks and drops it), and never runs."""
    start_worker()
    body, headers = celery_message("tests.ok")
    headers["expires"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    vhost.publish("orders", body, headers=headers)
    [dead] = refused(vhost)
    assert dead.body == body
    assert header(dead, "x-error-class") == "expired"
    assert header(dead, "x-error-type") == "TaskExpired"
    assert not events(tmp_path / "ledger.txt", "done", headers["id"])


def test_a_task_whose_expiry_passes_while_it_backs_off_is_dead_lettered_as_expired(
    vhost, start_worker, client, tmp_path: Path
):
    """Given a task that fails once and backs off 2.5 s, with expires in 1 s, it
    comes back from orders.retry.1 after its expiry and goes to orders.dlq as
    expired with its retry count; it ran once."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    result = client.send_task("tests.slow_backoff", queue="orders", expires=1.0)
    [dead] = refused(vhost)
    assert header(dead, "x-error-class") == "expired"
    assert header(dead, "x-retry-count") == 1
    assert len(events(ledger, "attempt", result.id)) == 1
    assert not events(ledger, "done", result.id)


@pytest.mark.parametrize("prop", ["correlation_id", "type", "app_id", "content_type", "message_id"])
def test_a_property_that_is_not_utf8_is_dead_lettered_and_the_worker_survives(
    vhost, start_worker, tmp_path: Path, prop: str
):
    """Given a message whose AMQP property is not UTF-8 (py-amqp fails decoding
    the frame), the worker keeps its pid and its connection, and the message is in
    orders.dlq as undecodable with the raw bytes in x-undecodable-properties."""
    worker = start_worker()
    body, headers = celery_message("tests.ok")
    properties: dict[str, Any] = {"content_type": "application/json", prop: b"\xff\xfe-not-utf8"}
    vhost.publish("orders", body, headers=headers, **properties)
    [dead] = refused(vhost)
    assert dead.body == body
    assert header(dead, "x-error-class") == "undecodable"
    assert header(dead, "x-error-type") == "UndecodableProperty"
    assert header(dead, "x-undecodable-properties") == {prop: b"\xff\xfe-not-utf8"}
    assert not events(tmp_path / "ledger.txt", "done", headers["id"])
    still_working(vhost, worker, tmp_path / "ledger.txt")
    assert "Unrecoverable" not in worker.log()


def test_apply_many_routes_by_the_tasks_own_queue_option(vhost, client):
    """Given a task declared with queue="payments" in a module routed to no queue,
    apply_many puts its messages where apply_async does: in payments."""

    @client.task(name="tests.routed_by_option", queue="payments", shared=False)
    def routed() -> None: ...

    with client.connection_for_write() as connection:
        declare_topology(connection, platform_config(client).topology)
    routed.apply_async()
    routed.apply_many([((), {}), ((), {})])
    assert vhost.depth("payments") == 3
    assert vhost.depth("default") == 0
    messages = vhost.take_all("payments")
    assert {json.loads(message.body)[0] == [] for message in messages} == {True}
