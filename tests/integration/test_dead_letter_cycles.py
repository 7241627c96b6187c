"""Copies the platform publishes never look like a dead-letter cycle to RabbitMQ.

RabbitMQ before 4.0 silently drops a message dead-lettered into a queue its
``x-death`` history already names, when every death in it was automatic
(expired, delivery_limit). Delay queues dead-letter back into their work
queue, so a copy that carried a broker-made history would vanish on its next
retry. Real RabbitMQ (a fresh vhost per test), real worker and CLI processes.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.ledger import events
from tests.support.messages import celery_message, header
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker


def broker_dead_letter(vhost, env: dict[str, str], task: str, args: list) -> tuple[str, bytes]:
    """A message of ``task`` that RabbitMQ itself dead-lettered from orders (delivery limit).

    A raw consumer takes it and gives it back until the quorum queue's own
    ``x-delivery-limit`` moves it to orders.dlq with ``x-death`` naming orders.
    """
    declared = run_cli(env, "topology", "declare")
    assert declared.returncode == 0, declared.stderr
    body, headers = celery_message(task, args)
    vhost.publish("orders", body, headers=headers, exchange="platform.tasks")
    vhost.give_back_until_dead_lettered("orders")
    return headers["id"], body


def dlq_letters(env: dict[str, str]) -> list[dict]:
    result = run_cli(env, "dlq", "show", "orders", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_a_replayed_broker_dead_letter_survives_its_next_retry(
    vhost, platform_env, start_worker, tmp_path: Path
):
    """Given a message RabbitMQ dead-lettered for its delivery limit (x-death names
    orders), when an operator replays it and its first attempt times out, then the
    retry comes back from orders.retry.1 and completes: nothing is dropped as a cycle."""
    ledger = tmp_path / "ledger.txt"
    task_id, _ = broker_dead_letter(vhost, platform_env, "tests.flaky", [1])
    [letter] = dlq_letters(platform_env)
    assert letter["error_class"] == "poison"
    assert letter["error_type"] == "x-death:delivery_limit"

    replayed = run_cli(platform_env, "dlq", "replay", "orders")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    start_worker()
    wait_for(lambda: events(ledger, "done", task_id), timeout=30, message="the replayed task to complete")
    assert [entry.extra for entry in events(ledger, "attempt", task_id)] == ["0", "1"]
    assert vhost.depth("orders.dlq") == 0


def test_a_broker_dead_letter_replayed_twice_keeps_its_story_and_no_x_death(
    vhost, platform_env, start_worker, tmp_path: Path
):
    """Given a broker-made dead letter of a task that fails for good, when it is
    replayed, dead-lettered by the platform, and replayed again, then it is back in
    orders.dlq each time with its body, x-replay-count 2, no x-death, and the
    broker's first verdict kept as x-broker-death-reason."""
    ledger = tmp_path / "ledger.txt"
    task_id, body = broker_dead_letter(vhost, platform_env, "tests.permanent", [])
    start_worker()
    for replay_number in (1, 2):
        result = run_cli(platform_env, "dlq", "replay", "orders")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(
            lambda n=replay_number: (
                len(events(ledger, "attempt", task_id)) == n and vhost.depth("orders.dlq") == 1
            ),
            timeout=30,
            message=f"replay {replay_number} to fail and be dead-lettered again",
        )
    [dead] = vhost.take_all("orders.dlq")
    assert dead.body == body
    assert header(dead, "x-replay-count") == 2
    assert header(dead, "x-error-class") == "permanent"
    assert header(dead, "x-broker-death-reason") == "delivery_limit"
    assert header(dead, "x-broker-death-queue") == "orders"
    assert header(dead, "x-death") is None
    assert not [name for name in dead.properties["application_headers"] if name.startswith("x-first-death")]


def test_ten_retries_through_the_same_tier_all_come_back(vhost, start_worker, client, tmp_path: Path):
    """Given a task that times out 10 times (waits capped at 0.1 s, so retries 5-10
    all pass through orders.retry.5), it completes on attempt 11 with every retry
    counted: expiring from the same delay queue again and again is no cycle."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    result = client.send_task("tests.flaky_many", args=[10], queue="orders")
    wait_for(lambda: events(ledger, "done", result.id), timeout=45, message="the task to complete")
    assert [entry.extra for entry in events(ledger, "attempt", result.id)] == [str(n) for n in range(11)]
    assert vhost.depth("orders.dlq") == 0
    assert vhost.depth("orders.retry.5") == 0


def test_a_replayed_dead_letter_with_a_text_encoding_keeps_its_bytes(vhost, platform_env):
    """Given a dead letter whose body is big-endian UTF-16 text (content_encoding
    utf-16, its byte-order mark first), a replay puts exactly those bytes back on
    orders: py-amqp would decode the body, and encoding it anew gives this
    machine's little-endian bytes."""
    declared = run_cli(platform_env, "topology", "declare")
    assert declared.returncode == 0, declared.stderr
    _, headers = celery_message("tests.ok")
    headers.update({"x-error-class": "permanent", "x-original-queue": "orders"})
    body = codecs.BOM_UTF16_BE + json.dumps([[], {}, {}]).encode("utf-16-be")
    vhost.publish("orders.dlq", body, headers=headers, content_encoding="utf-16")
    replayed = run_cli(platform_env, "dlq", "replay", "orders")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    [copy] = vhost.take_all("orders")
    assert copy.body == body
