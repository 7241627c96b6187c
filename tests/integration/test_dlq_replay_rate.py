"""Replay rate side by side with a raw AMQP move loop, in one run on one broker.

Both move the same number of dead letters from ``orders.dlq`` to ``orders``
with the same guarantee: get, publish, wait for that publish's confirm, then
ack. The platform's replay adds filtering, header rewriting and the re-failure
watch; the target is at least half the raw rate.
"""

from __future__ import annotations

import time

import amqp
import pytest
from kombu import Connection

from tests.integration.test_dlq_cli import run_cli
from tests.support.messages import celery_message
from tests.support.wait import wait_for
from workers.dlq import replay

pytestmark = pytest.mark.broker

#: Dead letters moved by each contender.
COUNT = 1500
#: The platform's replay must reach this share of the raw rate.
TARGET_SHARE = 0.5


def seed_many(vhost, count: int) -> None:
    """``count`` dead letters in orders.dlq, published with pipelined confirms."""
    body, headers = celery_message("tests.ok")
    headers.update({"x-original-queue": "orders", "x-task-name": "tests.ok", "x-error-class": "transient"})
    with vhost.connect() as connection:
        channel = connection.channel()
        channel.confirm_select()
        for _ in range(count):
            channel.basic_publish(
                amqp.Message(body, application_headers=headers, delivery_mode=2), "", "orders.dlq"
            )
    wait_for(lambda: vhost.depth("orders.dlq") == count, timeout=30, message=f"{count} seeded dead letters")


def raw_move(vhost, count: int) -> float:
    """Move ``count`` messages with the plainest safe loop; returns messages per second."""
    with vhost.connect() as connection:
        channel = connection.channel()
        channel.confirm_select()
        started = time.perf_counter()
        for _ in range(count):
            message = channel.basic_get("orders.dlq", no_ack=False)
            channel.basic_publish_confirm(
                amqp.Message(message.body, **message.properties),
                exchange="",
                routing_key="orders",
                mandatory=True,
            )
            channel.basic_ack(message.delivery_tag)
        return count / (time.perf_counter() - started)


def test_replay_moves_dead_letters_at_least_half_as_fast_as_a_raw_amqp_move_loop(vhost, platform_env, capsys):
    """1,500 letters moved by the raw loop, then 1,500 by the platform's replay:
    the replay reaches at least TARGET_SHARE of the raw rate (both printed)."""
    assert run_cli(platform_env, "topology", "declare").returncode == 0
    seed_many(vhost, COUNT)
    raw_rate = raw_move(vhost, COUNT)
    assert vhost.depth("orders") == COUNT and vhost.depth("orders.dlq") == 0
    with vhost.connect() as connection:
        connection.channel().queue_purge("orders")

    seed_many(vhost, COUNT)
    with Connection(vhost.url) as connection:
        result = replay(connection, "orders")
    assert result.replayed == COUNT
    assert vhost.depth("orders") == COUNT and vhost.depth("orders.dlq") == 0
    share = result.rate / raw_rate
    with capsys.disabled():
        print(
            f"\nreplay rate: raw AMQP move {raw_rate:.0f}/s, platform replay {result.rate:.0f}/s ({share:.0%})"
        )
    assert share >= TARGET_SHARE, f"replay {result.rate:.0f}/s is {share:.0%} of raw {raw_rate:.0f}/s"
