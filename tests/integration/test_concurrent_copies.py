"""Two copies of one task message running at the same time commit the side effect once.

A publish that raised ``PublishError`` while the broker blocked publishers can
still arrive, and the retry policy's attempts carry the same task id: the
disk-alarm chaos run saw three copies arrive together and two run at once in
two pool processes. Both passed the "already completed?" check before either
committed; the transaction of the second must then roll back.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.chaos_ledger import side_effects
from tests.support.chaos_run import CHAOS_TASKS, chaos_task
from tests.support.ledger import events
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker


def test_two_copies_of_a_task_running_at_once_commit_its_side_effect_once(
    vhost, client, start_worker, tmp_path: Path
):
    """Given a worker with two pool processes, when two messages with the same
    task id arrive together and both start (each runs 1 s), then both finish,
    the side effect exists once, and the queue is empty (both acked)."""
    ledger_file, state_db = tmp_path / "ledger.txt", tmp_path / "state.sqlite3"
    start_worker(concurrency=2, PLATFORM_TASK_MODULES=CHAOS_TASKS)
    work = chaos_task(client)
    task_id = str(uuid.uuid4())
    for _ in range(2):
        work.apply_async(args=(1.0,), task_id=task_id, queue="orders")
    wait_for(
        lambda: len(events(ledger_file, "attempt", task_id)) == 2, timeout=30, message="both copies running"
    )
    wait_for(
        lambda: vhost.queue_info("orders").get("messages") == 0 and side_effects(state_db)[task_id] >= 1,
        timeout=30,
        interval=0.2,
        message="both copies settled",
    )
    assert side_effects(state_db)[task_id] == 1, "the side effect committed twice"
