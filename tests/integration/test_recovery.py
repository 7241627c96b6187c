"""What happens when work fails: every row of DESIGN.md's lifecycle table.

Real RabbitMQ (a fresh vhost per test), real ``celery worker`` processes. The
test tasks (tests/support/tasks.py) record each attempt in a ledger file.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from tests.support.ledger import events
from tests.support.messages import celery_message, header
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker

#: Time a retry may take beyond its computed window: the worker's failure
#: handling, the republish with confirm, RabbitMQ's expiry and redelivery.
SCHEDULE_TOLERANCE = 0.35

DLQ_HEADERS = (
    "x-original-queue", "x-original-exchange", "x-original-routing-key", "x-task-name", "x-task-id",
    "x-error-class", "x-error-type", "x-error-message", "x-error-traceback", "x-retry-count",
    "x-first-failed-at", "x-last-failed-at", "x-worker",
)  # fmt: skip


def attempts(ledger: Path, task_id: str) -> list[float]:
    return [entry.at for entry in events(ledger, "attempt", task_id)]


def test_a_transient_failure_recovers_on_attempt_3_on_schedule(vhost, client, start_worker, tmp_path: Path):
    """Given a task that times out twice (base 0.2 s, jitter up to 0.1 s), it
    completes on attempt 3, and each wait lies in [base*2**n, base*2**n + jitter]
    plus SCHEDULE_TOLERANCE; meanwhile the message waited in orders.retry.N."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    result = client.send_task("tests.flaky", args=[2], queue="orders")
    wait_for(lambda: events(ledger, "done", result.id), message="the task to complete")
    times = attempts(ledger, result.id)
    assert len(times) == 3
    for n, (earlier, later) in enumerate(zip(times, times[1:], strict=False)):
        low = 0.2 * 2**n
        high = low + 0.1 + SCHEDULE_TOLERANCE
        assert low <= later - earlier <= high, (
            f"wait {n + 1} was {later - earlier:.3f}s, not in [{low}, {high}]"
        )
    assert vhost.depth("orders.dlq") == 0
    assert vhost.depth("orders") == 0


def test_a_permanent_failure_is_dead_lettered_after_one_attempt_with_full_metadata(
    vhost, start_worker, tmp_path: Path
):
    """A PermanentError goes to orders.dlq at once: one attempt, the original body
    byte for byte, and every header operators rely on."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    body, headers = celery_message("tests.permanent")
    vhost.publish("orders", body, headers=headers, exchange="platform.tasks", correlation_id=headers["id"])
    wait_for(lambda: vhost.depth("orders.dlq") == 1, message="the dead letter")
    [dead] = vhost.take_all("orders.dlq")
    assert dead.body == body
    assert len(attempts(ledger, headers["id"])) == 1
    for name in DLQ_HEADERS:
        assert header(dead, name) not in (None, ""), f"{name} missing"
    assert header(dead, "x-error-class") == "permanent"
    assert header(dead, "x-error-type") == "workers.errors.PermanentError"
    assert header(dead, "x-error-message") == "order 42 is invalid: <script>alert(1)</script>"
    assert "PermanentError" in header(dead, "x-error-traceback")
    assert header(dead, "x-retry-count") == 0
    assert header(dead, "x-original-queue") == "orders"
    assert header(dead, "x-original-routing-key") == "orders"
    assert header(dead, "x-original-exchange") == "platform.tasks"
    assert header(dead, "x-task-name") == "tests.permanent"
    assert header(dead, "x-task-id") == headers["id"]
    assert header(dead, "x-first-failed-at") == header(dead, "x-last-failed-at")
    datetime.fromisoformat(header(dead, "x-first-failed-at"))
    assert dead.properties.get("correlation_id") == headers["id"]
    assert dead.properties.get("delivery_mode") == 2
    assert vhost.depth("orders") == 0


def test_an_unknown_failure_is_retried_twice_then_dead_lettered(vhost, client, start_worker, tmp_path: Path):
    """Any other exception is retried at most twice, then dead-lettered as unknown."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    result = client.send_task("tests.unknown", queue="orders")
    wait_for(lambda: vhost.depth("orders.dlq") == 1, message="the dead letter")
    [dead] = vhost.take_all("orders.dlq")
    assert len(attempts(ledger, result.id)) == 3
    assert header(dead, "x-error-class") == "unknown"
    assert header(dead, "x-error-type") == "RuntimeError"
    assert header(dead, "x-retry-count") == 2
    assert header(dead, "x-first-failed-at") < header(dead, "x-last-failed-at")
    assert json.loads(dead.body)[0] == []


def test_exhausted_retries_land_in_the_dlq_with_retry_count_5(vhost, client, start_worker, tmp_path: Path):
    """A transient failure that never recovers is tried 6 times (5 retries)."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    result = client.send_task("tests.always_transient", queue="orders")
    wait_for(lambda: vhost.depth("orders.dlq") == 1, timeout=30, message="the dead letter")
    [dead] = vhost.take_all("orders.dlq")
    assert len(attempts(ledger, result.id)) == 6
    assert header(dead, "x-error-class") == "transient"
    assert header(dead, "x-error-type") == "TimeoutError"
    assert header(dead, "x-retry-count") == 5


def test_a_worker_restart_during_backoff_loses_nothing(vhost, client, start_worker, tmp_path: Path):
    """Given 1,000 messages waiting in the broker's delay queue, when the only
    worker stops and starts again, all 1,000 complete, each exactly once."""
    ledger = tmp_path / "ledger.txt"

    @client.task(name="tests.flaky_long", shared=False)
    def flaky_long() -> None: ...

    worker = start_worker(concurrency=2)
    ids = flaky_long.apply_many([((), {})] * 1000, queue="orders")
    wait_for(
        lambda: len({e.task_id for e in events(ledger, "attempt")}) == 1000,
        timeout=90,
        message="every first attempt",
    )
    worker.stop()
    in_backoff = vhost.depth("orders.retry.1")
    assert in_backoff > 0, "the stop came too late to catch messages in backoff"
    assert vhost.depth("orders") + in_backoff + len(events(ledger, "done")) == 1000

    start_worker(concurrency=2)
    wait_for(lambda: len(events(ledger, "done")) >= 1000, timeout=120, message="all 1,000 to complete")
    done = [e.task_id for e in events(ledger, "done")]
    assert sorted(done) == sorted(ids), "each task completes exactly once"
    assert vhost.depth("orders.dlq") == 0


def test_messages_in_backoff_cost_the_worker_no_memory_and_no_unacked_slots(vhost, client, start_worker):
    """With 5,000 messages backing off in the broker, the worker holds no more
    unacked messages than its prefetch (2), and its memory does not grow with
    the backlog: after 500 failed attempts (imports and caches warmed up), 4,500
    more add less than 3 MB to the main process and less than 10% to the whole
    worker. Failed attempts leave no reference cycles behind (workers.delivery.verdict
    releases them), so pool processes stay flat too."""

    @client.task(name="tests.backoff_forever", shared=False)
    def backoff_forever() -> None: ...

    worker = start_worker(concurrency=2)
    main = psutil.Process(worker.pid)

    def resident(processes: list[psutil.Process]) -> int:
        return sum(p.memory_info().rss for p in processes)

    backoff_forever.apply_many([((), {})] * 500, queue="orders")
    wait_for(lambda: vhost.depth("orders.retry.1") == 500, timeout=60, message="500 in backoff")
    main_before, all_before = resident([main]), resident([main, *main.children()])
    backoff_forever.apply_many([((), {})] * 4500, queue="orders")
    wait_for(lambda: vhost.depth("orders.retry.1") == 5000, timeout=200, message="5,000 in backoff")
    main_grown = resident([main]) - main_before
    all_grown = resident([main, *main.children()]) - all_before
    # Stock Celery holds ~7 KB per countdown retry in the main process: 4,500
    # more would be ~31 MB there.
    assert main_grown < 3 * 1024 * 1024, f"main process grew {main_grown / 1e6:.1f} MB"
    assert all_grown < 0.10 * all_before, f"worker grew {all_grown / 1e6:.1f} MB of {all_before / 1e6:.1f}"
    info = wait_for(lambda: vhost.queue_info("orders"), message="queue stats")
    assert info.get("messages_unacknowledged", 0) <= 2
    assert vhost.depth("orders.retry.1") == 5000


def test_a_poison_message_is_dead_lettered_while_healthy_work_completes(
    vhost, client, start_worker, tmp_path: Path
):
    """A message that kills its worker process every time is delivered 3 times
    (the delivery limit), then dead-lettered as poison; 500 healthy messages
    behind it all complete."""
    ledger = tmp_path / "ledger.txt"

    @client.task(name="tests.ok", shared=False)
    def ok() -> None: ...

    start_worker(concurrency=2)
    poison = client.send_task("tests.die", queue="orders")
    ok.apply_many([((), {})] * 500, queue="orders")
    wait_for(lambda: vhost.depth("orders.dlq") == 1, timeout=90, message="the poison message in the DLQ")
    wait_for(lambda: len(events(ledger, "done")) == 500, timeout=90, message="500 healthy tasks")
    [dead] = vhost.take_all("orders.dlq")
    assert header(dead, "x-task-id") == poison.id
    assert header(dead, "x-error-class") == "poison"
    assert len(events(ledger, "attempt", poison.id)) == 3


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_redelivery_after_committed_side_effects_does_not_run_again(
    vhost, client, start_worker, tmp_path: Path, store: str
):
    """Given a task that commits its side effect and completion mark in one
    transaction and then dies before the ack, the redelivered message is acked
    without running the body again: one side effect, one attempt."""
    ledger = tmp_path / "ledger.txt"
    if store == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    else:
        url = postgres_url()
    start_worker(PLATFORM_STATE_URL=url)
    key = f"charge-{vhost.name}"
    result = client.send_task("tests.commit_then_die", args=[key], queue="orders")
    wait_for(lambda: events(ledger, "attempt", result.id), message="the first attempt")
    wait_for(lambda: vhost.depth("orders") == 0, timeout=30, message="orders to be empty")
    wait_for(lambda: completed(url, result.id), message="the completion mark")
    assert side_effects(url, key) == 1
    assert len(events(ledger, "attempt", result.id)) == 1
    assert vhost.depth("orders.dlq") == 0


def postgres_url() -> str:
    import os

    import psycopg

    url = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        from tests.support.broker import in_ci

        if in_ci():
            pytest.fail(f"CI=true and PostgreSQL is required: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    return url


def completed(url: str, task_id: str) -> bool:
    """Whether the state store records ``task_id`` as completed.

    Read on a connection of its own, closed at once: open_store() would keep
    one open for the rest of the session (a ResourceWarning at exit).
    """
    query = "SELECT 1 FROM completed_tasks WHERE task_id = {}"
    if url.startswith("sqlite"):
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            try:
                return db.execute(query.format("?"), (task_id,)).fetchone() is not None
            except sqlite3.OperationalError:  # no table yet: nothing completed
                return False
    import psycopg

    with psycopg.connect(url) as db:
        try:
            return db.execute(query.format("%s"), (task_id,)).fetchone() is not None
        except psycopg.errors.UndefinedTable:
            return False


def side_effects(url: str, key: str) -> int:
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return db.execute("SELECT count(*) FROM side_effects WHERE key = ?", (key,)).fetchone()[0]
    import psycopg

    with psycopg.connect(url) as db:
        return db.execute("SELECT count(*) FROM side_effects WHERE key = %s", (key,)).fetchone()[0]
