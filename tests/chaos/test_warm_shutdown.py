"""Chaos on one node: a worker's warm shutdown (SIGTERM) while it runs tasks and holds prefetched ones.

Real RabbitMQ (the machine's node, a fresh vhost), a real ``celery worker``
(prefork, 2 processes, 4 prefetched per process). Celery's warm shutdown stops
consuming, lets the running tasks finish and ack, and closes the connection:
the broker returns what was prefetched but not started. The ledger must show
every task processed once, none lost, none run twice.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import sized
from tests.support.chaos_ledger import ChaosLedger, dead_letter_classes, side_effects
from tests.support.chaos_run import CHAOS_TASKS, Published, chaos_task, wait_settled
from tests.support.ledger import events
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker

#: Seconds each task runs: long enough that the SIGTERM finds two of them running.
TASK_SECONDS = 1.5


def test_a_warm_shutdown_finishes_running_tasks_and_returns_prefetched_ones(
    vhost, client, start_worker, tmp_path: Path
):
    """Given a worker running two tasks and holding more prefetched (unacked,
    not started), when it gets SIGTERM, then it exits 0 within the running
    tasks' time, each task it had started is done and acked before it exits,
    none is cut off, the prefetched ones are back in the queue, and a second
    worker processes them: every confirmed task processed once, none lost,
    none attempted twice."""
    ledger_file, state_db = tmp_path / "ledger.txt", tmp_path / "state.sqlite3"
    count = sized(10, 60)
    worker = start_worker(concurrency=2, PLATFORM_TASK_MODULES=CHAOS_TASKS, PLATFORM_WORKER_PREFETCH="4")
    published = Published()
    started = time.monotonic()
    published.many(chaos_task(client), count, seconds=TASK_SECONDS)
    # Two attempts, no completion yet: both processes are mid-task, the rest is prefetched.
    wait_for(
        lambda: len(events(ledger_file, "attempt")) >= 2,
        timeout=30,
        interval=0.02,
        message="two tasks running",
    )
    running = {entry.task_id for entry in events(ledger_file, "attempt")}
    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    exit_code = worker.process.wait(timeout=TASK_SECONDS * 2 + 30)
    shutdown_s = time.monotonic() - signalled
    attempted_by_first = {entry.task_id for entry in events(ledger_file, "attempt")}
    done_by_first = set(side_effects(state_db))
    expected_back = count - len(done_by_first)
    # The broker returns the prefetched messages once it sees the connection closed.
    wait_for(
        lambda: vhost.depth("orders") == expected_back,
        timeout=10,
        interval=0.1,
        message=lambda: f"{expected_back} unstarted messages back in orders (now {vhost.depth('orders')})",
    )

    start_worker(concurrency=2, PLATFORM_TASK_MODULES=CHAOS_TASKS)
    wait_settled(published.confirmed, state_db, lambda: vhost.depth("orders.dlq"), timeout=sized(60, 180))
    ledger = ChaosLedger.build(
        "warm-shutdown",
        f"SIGTERM of a worker running {len(running)} tasks with {count - len(attempted_by_first)} prefetched",
        published.confirmed,
        published.refused,
        state_db,
        ledger_file,
        dead_letter_classes(vhost.take_all("orders.dlq")),
        started,
        {"shutdown_s": shutdown_s, "finished_by_first": len(done_by_first), "returned": expected_back},
    )
    ledger.write()
    ledger.check()
    assert exit_code == 0, f"the worker exited with {exit_code} on SIGTERM"
    assert running <= done_by_first, "a task running at the SIGTERM was cut off instead of finished"
    assert attempted_by_first == done_by_first, "the first worker left a task it had started unfinished"
    assert ledger.redelivered == 0, f"a task ran twice: {ledger.summary()}"
    assert not ledger.dead_lettered, ledger.summary()
