"""Chaos on the cluster: a task that runs longer than the broker's consumer timeout.

RabbitMQ closes a channel whose oldest unacknowledged delivery is older than
``consumer_timeout`` (``PRECONDITION_FAILED - delivery acknowledgement on
channel 1 timed out``) and returns its messages to the queue. RabbitMQ 3.10
checks on the channel's tick, ``channel_tick_interval`` (60 s by default: "about
once a minute"); both can be lowered at run time for channels opened after,
so the scenario sets 3 s and 0.5 s on the private cluster (and restores them).

What happens (measured on 3.10.8): the channel closes every timeout plus a
tick while the long task holds its delivery; each close restarts the worker's
connection (``broker_channel_error_retry``) and Celery terminates the running
late-ack tasks (``worker_cancel_long_running_tasks_on_connection_loss``), whose
messages the broker has already returned. A message cut off three times (the
long task, and a short task that happened to run at each close) is
dead-lettered as ``poison`` on its fourth delivery. A run can still finish: in
the measured run the long task's third run committed after its fourth
delivery had been dead-lettered, so the DLQ held poison dead letters of tasks
whose side effect had committed once (a replay of them is absorbed by
idempotency). Nothing is lost, nothing commits twice. A task longer than
``consumer_timeout`` needs a longer timeout (the node's setting; a queue's
``x-consumer-timeout`` from RabbitMQ 3.12), not retries.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import sized
from tests.support.chaos_ledger import ChaosLedger, dead_letter_classes, side_effects
from tests.support.chaos_run import Published, chaos_task
from tests.support.cluster_chaos import settle
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
        settle(platform, published, timeout=sized(120, 300))
        channel_closed = worker.log().count("delivery acknowledgement on channel")
    dead = dead_letter_classes(platform.vhost.take_all("orders.dlq"))
    completed = set(side_effects(platform.state_db))
    ledger = ChaosLedger.build(
        "consumer-timeout",
        f"consumer_timeout {TIMEOUT_MS} ms (tick {TICK_MS} ms), one task of {LONG_TASK_S:g} s among short ones",
        published.confirmed,
        published.refused,
        platform.state_db,
        platform.ledger,
        dead,
        started,
        {
            "channel_timeouts": channel_closed,
            "long_task_runs": len(events(platform.ledger, "attempt", long_id)),
            "long_task_committed": int(long_id in completed),
            "dead_letters_of_committed_tasks": len(set(dead) & completed),
        },
    )
    ledger.write()
    ledger.check()
    assert channel_closed >= 1, "the broker never closed the worker's channel: the timeout was not shown"
    assert len(events(platform.ledger, "attempt", long_id)) >= 2, "the long task was not redelivered"
