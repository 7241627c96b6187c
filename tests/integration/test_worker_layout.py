"""The default worker layout (solo processes, prefetch window 2) keeps the lifecycle's guarantees.

Real RabbitMQ (a fresh vhost per test), real worker processes started with
:func:`config.layout.worker_command`, the command line ``make up``
uses; ``PLATFORM_WORKER_LAYOUT`` is left unset, so they run the default.

The long-task test runs a task of :data:`LONG_TASK_SECONDS` (12 s by default,
with 2-second heartbeats: six intervals, three times what the broker allows
without one); ``make test-layout-long`` runs it for 40 s.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.ledger import Entry, events, read_ledger
from tests.support.messages import header
from tests.support.wait import wait_for
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.broker

#: Seconds the long task runs (``make test-layout-long`` sets 40).
LONG_TASK_SECONDS = float(os.environ.get("TEST_LONG_TASK_SECONDS", "12"))
#: Broker heartbeat of the long-task test's worker, in seconds.
HEARTBEAT = 2
#: Task modules of these tests' workers.
MODULES = "tests.support.tasks,tests.support.limit_tasks,tests.support.layout_tasks"
#: Seconds one long task of the fairness test takes.
LONG = 1.0
#: What a loaded machine may add to "one long task" in the fairness check.
FAIRNESS_TOLERANCE = 0.5


@pytest.fixture
def layout_worker(platform_env: dict[str, str], tmp_path: Path):
    """Start ``layout_worker(index=1, group=False, **env)``; every one is stopped after the test."""
    started: list[WorkerProcess] = []

    def start(index: int = 1, group: bool = False, **env: str) -> WorkerProcess:
        full = {**platform_env, "PLATFORM_TASK_MODULES": MODULES, **env}
        worker = (
            WorkerProcess.group(full, tmp_path)
            if group
            else WorkerProcess.laid_out(full, tmp_path, index=index)
        )
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop(wait=False)


@pytest.fixture
def limit_1_client(platform_env: dict[str, str]):
    """A client whose topology has a delivery limit of 1, like the workers of the poison tests."""
    from config.app import create_app
    from config.settings import load_settings

    app = create_app(load_settings({**platform_env, "PLATFORM_DELIVERY_LIMIT": "1"}), main="limit-1-client")
    yield app
    app.close()


def the_dead_letter(vhost, timeout: float = 60):
    wait_for(lambda: vhost.depth("orders.dlq") >= 1, timeout=timeout, message="a dead letter in orders.dlq")
    [dead] = vhost.take_all("orders.dlq")
    return dead


def test_a_long_task_keeps_its_connection_and_is_never_redelivered_while_it_runs(
    vhost, layout_worker, client, tmp_path: Path
):
    """Given a solo worker with 2-second broker heartbeats, when a task runs
    for many heartbeat intervals (the consumer loop is blocked all along),
    then the task starts exactly once and completes, the worker never lost its
    connection, and the queue is empty afterwards."""
    worker = layout_worker(PLATFORM_BROKER_HEARTBEAT=str(HEARTBEAT))
    result = client.send_task("tests.slow", args=[LONG_TASK_SECONDS], queue="orders")
    ledger = tmp_path / "ledger.txt"
    wait_for(
        lambda: events(ledger, "done", result.id), timeout=LONG_TASK_SECONDS + 60, message="the long task"
    )
    # The next task still runs on the same connection: the loop is alive after the long one.
    after = client.send_task("tests.ok", queue="orders")
    wait_for(lambda: events(ledger, "done", after.id), timeout=30, message="a task after the long one")
    assert len(events(ledger, "start", result.id)) == 1, "the long task was redelivered while it ran"
    log = worker.log_since_start()
    assert "Connection to broker lost" not in log, log[-2000:]
    assert "missed heartbeats" not in log.lower(), log[-2000:]
    assert vhost.depth("orders") == 0


def test_a_soft_time_limit_stops_a_task_in_a_solo_worker(vhost, layout_worker, client, tmp_path: Path):
    """Given a task that sleeps past its 0.3 s soft time limit in a solo worker,
    SoftTimeLimitExceeded is raised in its body: an unknown failure, run 1 + 2
    times, then dead-lettered naming the limit (as under prefork)."""
    layout_worker()
    result = client.send_task("tests.limits.soft", queue="orders")
    dead = the_dead_letter(vhost)
    assert header(dead, "x-task-id") == result.id
    assert header(dead, "x-error-class") == "unknown"
    assert header(dead, "x-error-type").rpartition(".")[2] == "SoftTimeLimitExceeded"
    assert len(events(tmp_path / "ledger.txt", "attempt", result.id)) == 3


def test_a_hard_time_limit_ends_the_solo_process_and_the_redelivery_is_counted(
    vhost, layout_worker, limit_1_client, tmp_path: Path
):
    """Given a worker group (one solo process, delivery limit 1) and a task that
    sleeps past its 0.3 s hard time limit, the process exits with code 70, the
    group starts it again, and the redelivered message is dead-lettered as
    poison: the broker counted the delivery the limit ended."""
    group = layout_worker(group=True, PLATFORM_CONCURRENCY="1", PLATFORM_DELIVERY_LIMIT="1")
    result = limit_1_client.send_task("tests.limits.hard", queue="orders")
    dead = the_dead_letter(vhost)
    assert header(dead, "x-task-id") == result.id
    assert header(dead, "x-error-class") == "poison"
    assert len(events(tmp_path / "ledger.txt", "attempt", result.id)) == 1
    log = group.log_since_start()
    assert "hard time limit (0.3s) exceeded for tests.limits.hard" in log
    assert "exited with 70; starting it again" in log


def test_a_killed_process_redelivers_its_messages_and_the_prefetched_one_is_not_poison(
    vhost, layout_worker, limit_1_client, tmp_path: Path
):
    """Given a solo worker (window 2) running a slow task with a second message
    waiting behind it, and a delivery limit of 1, when the process is killed
    both come back; the one that ran is dead-lettered as poison, the one that
    only waited runs and completes."""
    ledger = tmp_path / "ledger.txt"
    worker = layout_worker(PLATFORM_DELIVERY_LIMIT="1")
    running = limit_1_client.send_task("tests.slow", args=[60], queue="orders")
    waiting = limit_1_client.send_task("tests.ok", queue="orders")
    wait_for(lambda: events(ledger, "start", running.id), timeout=30, message="the slow task to start")
    wait_for(
        lambda: vhost.depth("orders") == 0, timeout=10, message="the second message in the worker's window"
    )
    worker.kill_main()

    layout_worker(PLATFORM_DELIVERY_LIMIT="1")
    wait_for(lambda: events(ledger, "done", waiting.id), timeout=60, message="the waiting task to run")
    dead = the_dead_letter(vhost)
    assert header(dead, "x-task-id") == running.id
    assert header(dead, "x-error-class") == "poison"
    assert len(events(ledger, "start", running.id)) == 1
    assert vhost.depth("orders") == 0 and vhost.depth("orders.dlq") == 0


def idle_time(busy: list[tuple[float, float]], start: float, end: float) -> float:
    """Seconds within ``[start, end]`` not covered by any of the ``busy`` intervals."""
    covered, cursor = 0.0, start
    for begin, finish in sorted(busy):
        begin, finish = max(begin, cursor), min(finish, end)
        if finish > begin:
            covered += finish - begin
            cursor = finish
    return (end - start) - covered


def test_with_1ms_and_1s_tasks_over_two_workers_no_message_waits_while_the_other_worker_idles(
    vhost, layout_worker, client, tmp_path: Path
):
    """Given two solo workers and a queue of 1 s tasks mixed with 1 ms ones,
    no task starts later than one long task after the other worker went
    idle: what waits behind a running task in one worker's window is at most
    one message, never a backlog the idle worker could have taken."""
    ledger = tmp_path / "ledger.txt"
    layout_worker(index=1, PLATFORM_CONCURRENCY="2")
    layout_worker(index=2, PLATFORM_CONCURRENCY="2")
    ids = []
    for _ in range(4):
        ids.append(client.send_task("tests.layout.work", args=[LONG], queue="orders").id)
        ids.extend(client.send_task("tests.layout.work", args=[0.001], queue="orders").id for _ in range(10))
    wait_for(lambda: len(events(ledger, "done")) == len(ids), timeout=60, message="every task to complete")

    entries = read_ledger(ledger)
    starts: dict[str, Entry] = {e.task_id: e for e in entries if e.event == "start"}
    busy: dict[str, list[tuple[float, float]]] = {}
    for done in (e for e in entries if e.event == "done"):
        busy.setdefault(done.extra.strip(), []).append((starts[done.task_id].at, done.at))
    assert len(busy) == 2, f"both workers ran tasks: {sorted(busy)}"
    first = min(e.at for e in starts.values())
    worst = 0.0
    for task_id in ids:
        start = starts[task_id]
        [other] = [pid for pid in busy if pid != start.extra.strip()]
        last_end = max(end for _, end in busy[other])
        # The other worker's idle time before this task started, while it still had work to come.
        worst = max(worst, idle_time(busy[other], first, min(start.at, last_end)))
    assert worst <= LONG + FAIRNESS_TOLERANCE, f"a task waited {worst:.2f}s while the other worker idled"


def test_a_solo_worker_group_passes_sigterm_on_and_stops(vhost, layout_worker):
    """Given a worker group of two solo processes, SIGTERM stops both (Celery's warm shutdown) and the group exits 0."""
    group = layout_worker(group=True)
    wait_for(
        lambda: group.log_since_start().count(" ready.") >= 2, timeout=60, message="both processes ready"
    )
    children = group.child_pids()
    assert len(children) == 2
    group.process.send_signal(signal.SIGTERM)
    assert group.process.wait(timeout=30) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)
