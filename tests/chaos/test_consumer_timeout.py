"""Chaos on the cluster: a task that runs longer than the broker's consumer timeout.

RabbitMQ closes a channel whose oldest unacknowledged delivery is older than
``consumer_timeout`` (``PRECONDITION_FAILED - delivery acknowledgement on
channel N timed out``) and returns its messages to the queue. RabbitMQ 3.10
checks on the channel's tick, ``channel_tick_interval`` (60 s by default): the
scenario lowers both on the private cluster (3 s and 0.5 s) for the worker's
channels. What the platform's worker then does: the channel error restarts
its connection (``broker_channel_error_retry``), and
``worker_cancel_long_running_tasks_on_connection_loss`` terminates the running
late-ack tasks, whose messages the broker has returned; the long task starts
again on each redelivery and is cut off again, so its delivery count reaches
the limit and it is dead-lettered as ``poison`` without ever committing its
side effect. Short tasks cut off with it run again and commit once. Nothing is
lost, nothing commits twice: a task longer than ``consumer_timeout`` needs a
longer timeout (a queue's ``x-consumer-timeout`` from RabbitMQ 3.12, or the
node's setting), not a retry.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import sized
from tests.chaos.test_cluster_faults import dead_letters, ledger_of
from tests.support.chaos_run import Published, chaos_task, wait_settled
from tests.support.cluster_faults import short_consumer_timeout
from tests.support.ledger import events

pytestmark = pytest.mark.broker

#: The lowered consumer timeout and channel tick (milliseconds).
TIMEOUT_MS, TICK_MS = 3000, 500
#: Seconds the long task runs: well past the timeout plus a tick.
LONG_TASK_S = 8.0


@pytest.mark.timeout(900)
@pytest.mark.chaos_long
def test_a_task_longer_than_the_consumer_timeout_is_cut_off_and_dead_lettered_never_duplicated(
    cluster_platform,
):
    """Given consumer_timeout 3 s checked every 0.5 s, and a worker running one
    8-second task among short ones, when the broker closes the worker's channel
    for the unacknowledged long task, then the worker reconnects, the long task
    is cut off and redelivered until its delivery count reaches the limit and it
    is dead-lettered as poison, the short tasks all commit once, and the ledger
    shows none lost and no side effect twice."""
    platform = cluster_platform
    layout = platform.vhost.layout
    with short_consumer_timeout(layout, TIMEOUT_MS, TICK_MS):
        worker = platform.start()
        work = chaos_task(platform.client())
        published = Published()
        started = time.monotonic()
        published.one(work, seconds=LONG_TASK_S)
        long_id = published.confirmed[-1]
        published.many(work, sized(30, 300), seconds=0.2)
        wait_settled(
            published.confirmed, platform.state_db, lambda: dead_letters(platform), timeout=sized(120, 300)
        )
        channel_closed = worker.log().count("timed out")
    ledger = ledger_of(
        platform,
        "consumer-timeout",
        f"consumer_timeout {TIMEOUT_MS} ms (tick {TICK_MS} ms), one task of {LONG_TASK_S:g} s among short ones",
        published,
        started,
        long_task_attempts=len(events(platform.ledger, "attempt", long_id)),
        channel_timeouts_logged=channel_closed,
    )
    ledger.check()
    print(ledger.summary())
