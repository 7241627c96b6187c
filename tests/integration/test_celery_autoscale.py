"""Celery's own ``celery worker --autoscale=MAX,MIN`` on the platform's quorum queues, with a real worker.

With a quorum queue Celery turns global QoS off ("Prefetch count is now
static"): the worker always reserves up to MAX messages (MAX x the prefetch
multiplier 1), whatever its pool's size now. Celery's autoscaler sizes the
pool from the messages the worker reserved, so it still grows to MAX while
work waits and gives idle processes back after ``AUTOSCALE_KEEPALIVE``
seconds; it shrinks only idle processes, so a running task is never cut.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.broker import Vhost
from tests.support.ledger import events
from tests.support.wait import wait_for
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.broker


def test_autoscale_grows_while_work_waits_and_shrinks_idle_processes_without_cutting_a_running_task(
    vhost: Vhost, platform_env: dict[str, str], client, tmp_path: Path
) -> None:
    """Given a worker on the quorum queue orders with --autoscale=3,1 (keepalive 1 s),
    when a 10 s task and four 0.3 s tasks arrive,
    then the pool grows from 1 to 3 processes, every task runs exactly once, the pool goes
    back to 1 process while the long task still runs, and that task finishes there, never
    redelivered; the queue ends empty with nothing unacknowledged."""
    worker = WorkerProcess({**platform_env, "AUTOSCALE_KEEPALIVE": "1"}, tmp_path, "orders", 1)
    worker.args.append("--autoscale=3,1")
    ledger = tmp_path / "ledger.txt"
    try:
        worker.start()
        assert "Global QoS is disabled" in worker.log_since_start()
        assert len(worker.child_pids()) == 1
        long = client.send_task("tests.slow", args=[10.0], queue="orders")
        short = [client.send_task("tests.slow", args=[0.3], queue="orders") for _ in range(4)]

        wait_for(lambda: len(worker.child_pids()) == 3, 20, message="the pool to grow to 3 processes")
        wait_for(
            lambda: all(events(ledger, "done", task.id) for task in short),
            30,
            message="the short tasks to finish",
        )
        wait_for(
            lambda: len(worker.child_pids()) == 1 or events(ledger, "done", long.id),
            20,
            message="the pool to shrink to 1 process",
        )
        assert not events(ledger, "done", long.id), "the pool shrank only after the long task ended"
        wait_for(lambda: events(ledger, "done", long.id), 30, message="the long task to finish")

        for task in [long, *short]:
            assert len(events(ledger, "start", task.id)) == 1, task.id
            assert len(events(ledger, "done", task.id)) == 1, task.id
        assert "Scaling down" in worker.log_since_start()
        wait_for(
            lambda: (lambda q: (q.get("messages_ready"), q.get("messages_unacknowledged")) == (0, 0))(
                vhost.queue_info("orders")
            ),
            30,
            interval=0.5,
            message="orders to be empty with nothing unacknowledged",
        )
    finally:
        worker.stop()
