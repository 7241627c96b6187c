"""Celery's limits and options as the platform honours them: time limits, rate limits, priority, size.

Real RabbitMQ (a fresh vhost per test), real ``celery worker`` processes
running :mod:`tests.support.limit_tasks`. What is asserted is what a user sees:
dead letters and their headers, the ledger the tasks write, queue depths, the
exception a publisher gets, and a result a Celery client reads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from celery import signature
from celery.exceptions import WorkerLostError

from config.app import create_app, platform_config
from config.settings import load_settings
from config.topology import DELAY_LEVELS
from tests.support.cli import run_cli
from tests.support.ledger import events
from tests.support.messages import header
from tests.support.redis_backend import require_redis
from tests.support.wait import wait_for
from workers.broker import declare_topology
from workers.errors import MessageTooLarge, UnsupportedOption

pytestmark = pytest.mark.broker

#: Task modules of the workers here: the usual test tasks plus the limited ones.
LIMIT_MODULES = "tests.support.tasks,tests.support.limit_tasks"
#: The machine's Redis, for the result backend (keys are per task id; only ours are removed).


def ledger_of(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


def the_dead_letter(vhost, timeout: float = 30):
    wait_for(lambda: vhost.depth("orders.dlq") >= 1, timeout=timeout, message="a dead letter in orders.dlq")
    [dead] = vhost.take_all("orders.dlq")
    return dead


def delayed_count(vhost) -> int:
    """Messages waiting in all the delay levels (passive declares, exact)."""
    return sum(vhost.depth(f"platform.delay.{level}") for level in range(DELAY_LEVELS))


def declared(client) -> None:
    with client.connection_for_write() as connection:
        declare_topology(connection, platform_config(client).topology)


def ok_task(client):
    """The client's ``tests.ok`` (the workers run it); registered once per app."""
    if "tests.ok" not in client.tasks:

        @client.task(name="tests.ok", shared=False)
        def ok(value: object = None) -> None: ...

    return client.tasks["tests.ok"]


# -- time limits (issue 11, item 6) --------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "error_type"),
    [
        pytest.param("tests.limits.soft", "SoftTimeLimitExceeded", id="soft time limit"),
        pytest.param("tests.limits.hard", "TimeLimitExceeded", id="hard time limit"),
    ],
)
def test_a_task_over_its_time_limit_is_an_unknown_failure_retried_twice_then_dead_lettered(
    vhost, start_worker, client, tmp_path: Path, task: str, error_type: str
):
    """Given a task that always runs past its 0.3 s time limit, it runs 1 + 2
    times (PLATFORM_MAX_UNKNOWN_RETRIES), not 1 + 5 as a transient failure
    would, and its dead letter says unknown and names the time limit."""
    start_worker(PLATFORM_TASK_MODULES=LIMIT_MODULES)
    result = client.send_task(task, queue="orders")

    dead = the_dead_letter(vhost)

    assert header(dead, "x-task-id") == result.id
    assert header(dead, "x-error-class") == "unknown"
    assert header(dead, "x-error-type").rpartition(".")[2] == error_type
    assert header(dead, "x-retry-count") == 2
    assert len(events(ledger_of(tmp_path), "attempt", result.id)) == 3


def test_a_task_that_declares_its_soft_time_limit_transient_gets_its_own_retries(
    vhost, start_worker, client, tmp_path: Path
):
    """Given a task with transient_errors=(SoftTimeLimitExceeded,) and
    max_retries=1, over its limit it runs 2 times and is dead-lettered as transient."""
    start_worker(PLATFORM_TASK_MODULES=LIMIT_MODULES)
    result = client.send_task("tests.limits.soft_transient", queue="orders")

    dead = the_dead_letter(vhost)

    assert header(dead, "x-error-class") == "transient"
    assert header(dead, "x-error-type").endswith("SoftTimeLimitExceeded")
    assert len(events(ledger_of(tmp_path), "attempt", result.id)) == 2


# -- rate limits (item 7) ----------------------------------------------------------------


def test_a_rate_limited_task_waits_in_the_broker_while_unrelated_work_flows(
    vhost, start_worker, client, tmp_path: Path
):
    """Given 8 messages of a task limited to 2/s and then one unrelated quick
    task on the same queue, the quick task runs within about a second (stock
    Celery makes it wait behind them); the limited ones wait in the broker's
    delay levels, not in the worker, and each runs exactly once, at no more
    than 2 a second."""
    ledger = ledger_of(tmp_path)
    start_worker(PLATFORM_TASK_MODULES=LIMIT_MODULES)
    limited = [client.send_task("tests.limits.rated", queue="orders").id for _ in range(8)]
    enqueued = time.time()
    quick = client.send_task("tests.ok", queue="orders").id

    [quick_done] = wait_for(lambda: events(ledger, "done", quick), timeout=10, message="the quick task")
    waiting = delayed_count(vhost)

    assert quick_done.at - enqueued < 1.5, f"the quick task ran {quick_done.at - enqueued:.2f}s after"
    assert waiting >= 4, f"only {waiting} rate-limited messages wait in the delay levels"
    wait_for(
        lambda: all(events(ledger, "done", task_id) for task_id in limited),
        timeout=15,
        message="8 rate-limited tasks",
    )
    runs = sorted(entry.at for task_id in limited for entry in events(ledger, "done", task_id))
    assert len(runs) == 8  # each exactly once
    # Slot k starts k * 0.5 s after the first message was admitted; the first run
    # may itself start late (a pool process opening its state store), hence 0.25 s.
    for index, ran in enumerate(runs):
        assert ran - runs[0] >= index * 0.5 - 0.25, f"run {index} came {ran - runs[0]:.2f}s after the first"
    assert runs[-1] - runs[0] < 7 * 0.5 + 2.0
    assert vhost.depth("orders.dlq") == 0


def test_celery_control_rate_limit_changes_the_limit_of_a_running_worker(
    vhost, start_worker, client, platform_env: dict[str, str], tmp_path: Path
):
    """Given a worker running a task limited to 1/m, its second message waits in
    the delay levels; after ``celery control rate_limit <task> 100/s``, three
    new messages of that task run at once."""
    ledger = ledger_of(tmp_path)
    worker = start_worker(PLATFORM_TASK_MODULES=LIMIT_MODULES)
    first, second = (client.send_task("tests.limits.rated_slowly", queue="orders").id for _ in range(2))
    wait_for(lambda: events(ledger, "done", first), timeout=10, message="the first limited task")
    wait_for(lambda: delayed_count(vhost) == 1, timeout=10, message="the second to wait in the delay levels")

    changed = run_cli(
        {**platform_env, "PLATFORM_TASK_MODULES": LIMIT_MODULES},
        "control", "rate_limit", "tests.limits.rated_slowly", "100/s",
        "--destination", f"{worker.name}@{os.uname().nodename}", "--timeout", "5",
    )  # fmt: skip
    assert changed.returncode == 0 and "new rate limit set successfully" in changed.stdout, changed

    later = [client.send_task("tests.limits.rated_slowly", queue="orders").id for _ in range(3)]
    wait_for(
        lambda: all(events(ledger, "done", task_id) for task_id in later),
        timeout=5,
        message="3 tasks at the new rate",
    )
    assert not events(ledger, "done", second)  # it keeps the slot it was given


# -- priority (item 8) -------------------------------------------------------------------


def test_a_priority_is_refused_on_every_publish_path_and_nothing_reaches_the_broker(vhost, client):
    """Quorum queues have no priorities: apply_async, send_task and a signature
    with priority=5 raise UnsupportedOption (saying what to do instead), and no
    message reaches any queue."""
    ok = ok_task(client)
    declared(client)
    calls = {
        "apply_async": lambda: ok.apply_async(queue="orders", priority=5),
        "send_task": lambda: client.send_task("tests.ok", queue="orders", priority=5),
        "signature": lambda: signature("tests.ok", app=client, priority=5).apply_async(queue="orders"),
    }
    for path, call in calls.items():
        with pytest.raises(UnsupportedOption, match="own queue"):
            call()
            pytest.fail(f"{path} accepted a priority")
    ok.apply_async(queue="orders", priority=None)
    assert vhost.depth("orders") == 1
    assert delayed_count(vhost) == 0


# -- one size limit (item 11) -------------------------------------------------------------


def test_a_task_body_over_the_message_size_limit_is_refused_and_nothing_is_sent(vhost, client):
    """With PLATFORM_MAX_MESSAGE_BYTES at its default (1 MiB), 2 MiB of
    arguments raise MessageTooLarge on every publish path and nothing reaches
    the queue; a body just under the limit is sent."""
    ok = ok_task(client)
    declared(client)
    limit = platform_config(client).settings.max_message_bytes
    big = "x" * (2 * 1024 * 1024)
    calls = {
        "apply_async": lambda: ok.apply_async((big,), queue="orders"),
        "send_task": lambda: client.send_task("tests.ok", args=(big,), queue="orders"),
        "signature": lambda: signature("tests.ok", args=(big,), app=client).apply_async(queue="orders"),
        "apply_many": lambda: ok.apply_many([((big,), {})], queue="orders"),
    }
    for path, call in calls.items():
        with pytest.raises(MessageTooLarge, match=f"limit of {limit} bytes"):
            call()
            pytest.fail(f"{path} accepted 2 MiB")
    assert vhost.depth("orders") == 0

    envelope = len(b'[["x"], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]') - 1
    just_under = "x" * (limit - envelope)
    ok.apply_async((just_under,), queue="orders")
    [sent] = vhost.take_all("orders")
    assert len(sent.body) == limit


# -- results of refusals on receipt (item 2) ------------------------------------------------


@pytest.fixture
def redis_backend() -> str:
    """The machine's Redis as result backend: skipped locally, failed under CI=true, when down."""
    return require_redis()


def test_a_poison_message_ends_with_a_failure_result_not_started_forever(
    vhost, start_worker, platform_env: dict[str, str], redis_backend: str, tmp_path: Path
):
    """Given a result backend and a task that kills its pool process every
    time, after the delivery limit it is dead-lettered as poison and a client
    sees FAILURE with a WorkerLostError, not STARTED forever."""
    env = {**platform_env, "CELERY_RESULT_BACKEND": redis_backend}
    start_worker(**env)
    app = create_app(load_settings(env), main="poison-client")
    result = app.send_task("tests.die", queue="orders")
    try:
        dead = the_dead_letter(vhost, timeout=60)
        assert header(dead, "x-error-class") == "poison"
        wait_for(
            lambda: result.state == "FAILURE", timeout=10, message=lambda: f"FAILURE, not {result.state}"
        )
        error = result.get(propagate=False, timeout=5)
        assert isinstance(error, WorkerLostError), repr(error)
        assert "the 3 earlier deliveries ended without an ack" in str(error)
        assert len(events(ledger_of(tmp_path), "attempt", result.id)) == 3
    finally:
        import redis

        redis.Redis.from_url(redis_backend).delete(f"celery-task-meta-{result.id}")
        app.close()
