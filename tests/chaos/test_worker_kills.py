"""Chaos on one node: worker pool processes and main processes SIGKILLed in a loop under load.

Real RabbitMQ (the machine's node, a fresh vhost), real ``celery worker``
processes running ``chaos.work``. The ledger must show nothing lost and no
side effect twice, whatever the kills hit.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import sized
from tests.support.chaos_ledger import ChaosLedger, dead_letter_classes
from tests.support.chaos_run import CHAOS_TASKS, Published, chaos_task, done_count, wait_settled
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker


def test_workers_killed_in_a_loop_under_load_lose_nothing_and_run_no_side_effect_twice(
    vhost, client, start_worker, tmp_path: Path
):
    """Given confirmed tasks draining through one worker (prefork, 2 processes),
    when a pool process is SIGKILLed every few completed tasks and the main
    process (with its pool) is SIGKILLed and replaced now and then,
    then every confirmed task is processed or dead-lettered (a message that
    kept dying with its process is poison), none is lost, and no side effect
    commits twice."""
    ledger_file, state_db = tmp_path / "ledger.txt", tmp_path / "state.sqlite3"
    count, main_kills, pool_kills = sized(300, 3000), sized(1, 4), sized(4, 20)
    worker = start_worker(concurrency=2, PLATFORM_TASK_MODULES=CHAOS_TASKS)
    published = Published()
    started = time.monotonic()
    published.many(chaos_task(client), count, seconds=0.01)
    rng = random.Random(14)
    killed = {"pool": 0, "main": 0}
    for _round in range(main_kills):
        for _ in range(pool_kills):
            wanted = min(done_count(ledger_file) + 5, count)
            wait_for(lambda w=wanted: done_count(ledger_file) >= w, timeout=60, message="progress")
            children = worker.child_pids()
            if children:
                try:
                    os.kill(rng.choice(children), signal.SIGKILL)
                    killed["pool"] += 1
                except ProcessLookupError:
                    pass
        worker.kill_main()
        killed["main"] += 1
        worker = start_worker(concurrency=2, PLATFORM_TASK_MODULES=CHAOS_TASKS)
    wait_settled(published.confirmed, state_db, lambda: vhost.depth("orders.dlq"), timeout=sized(120, 600))
    ledger = ChaosLedger.build(
        "worker-kills",
        f"SIGKILL: {killed['pool']} pool processes, {killed['main']} main processes",
        published.confirmed,
        published.refused,
        state_db,
        ledger_file,
        dead_letter_classes(vhost.take_all("orders.dlq")),
        started,
        {"pool_kills": killed["pool"], "main_kills": killed["main"]},
    )
    ledger.write()
    ledger.check()
    assert killed["pool"] >= pool_kills // 2, (
        "the kills never hit a pool process: the scenario proved nothing"
    )
    assert set(ledger.dead_lettered) <= {"poison"}, (
        f"only poison may be dead-lettered here: {ledger.summary()}"
    )
