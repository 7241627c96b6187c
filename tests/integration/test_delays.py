"""Delayed tasks held by the broker: every publish path, on time, never early, never in a worker.

Real RabbitMQ (a fresh vhost per test), real ``celery worker`` processes. Due
times are checked against what the worker recorded (tests/support/tasks.py)
or against arrival in the work queue (a raw consumer, no worker).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import amqp
import pytest
from celery import signature

from config.app import platform_config
from config.topology import DELAY_LEVELS
from tests.support.broker import in_ci
from tests.support.cli import run_cli
from tests.support.ledger import events
from tests.support.messages import celery_message, header
from tests.support.wait import wait_for
from workers.broker import declare_topology
from workers.delivery.delays import DelayError
from workers.ops.metrics import collect, render

pytestmark = pytest.mark.broker

#: Seconds a delayed task may arrive after its due time in these tests (the levels'
#: dead-lettering hops plus a worker's receipt on a busy 2-core machine).
LATE = 1.0


def ok_task(client):
    """The client's ``tests.ok`` (the workers run it); registered once per app."""
    if "tests.ok" not in client.tasks:

        @client.task(name="tests.ok", shared=False)
        def ok(value: object = None) -> None: ...

    return client.tasks["tests.ok"]


def delayed_count(vhost) -> int:
    """Messages waiting in all the delay levels (passive declares, exact)."""
    return sum(vhost.depth(f"platform.delay.{level}") for level in range(DELAY_LEVELS))


def each_ran_once_when_due(ledger: Path, ids: list[str], due: float, timeout: float) -> None:
    """Every task of ``ids`` ran exactly once, and none before ``due`` (a Unix time)."""
    wait_for(
        lambda: all(events(ledger, "done", task_id) for task_id in ids),
        timeout=timeout,
        message=f"{len(ids)} delayed tasks",
    )
    for task_id in ids:
        assert len(events(ledger, "done", task_id)) == 1
        assert done_at(ledger, task_id) >= due


def declared(client) -> None:
    with client.connection_for_write() as connection:
        declare_topology(connection, platform_config(client).topology)


def done_at(ledger: Path, task_id: str) -> float:
    [entry] = events(ledger, "done", task_id)
    return entry.at


def inspect_scheduled(env: dict[str, str]) -> dict:
    result = run_cli(env, "inspect", "scheduled", "--json", "--timeout", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", ["apply_async", "send_task", "signature", "apply_many", "eta"])
def test_every_publish_path_delays_in_the_broker_and_runs_on_time(
    vhost, client, start_worker, platform_env, tmp_path: Path, path: str
):
    """Given a task published with a 2 s delay by each of Celery's publish paths,
    it waits in the delay levels (the worker holds nothing: inspect scheduled is
    empty and nothing is unacknowledged), then runs no earlier than due and at
    most LATE after."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    ok = ok_task(client)
    declared(client)
    published = time.time()
    if path == "apply_async":
        task_id = ok.apply_async(countdown=2, queue="orders").id
    elif path == "send_task":
        task_id = client.send_task("tests.ok", countdown=2, queue="orders").id
    elif path == "signature":
        task_id = signature("tests.ok", app=client).apply_async(countdown=2, queue="orders").id
    elif path == "apply_many":
        [task_id] = ok.apply_many([((), {})], queue="orders", countdown=2)
    else:
        task_id = ok.apply_async(eta=datetime.now(UTC) + timedelta(seconds=2), queue="orders").id
    wait_for(lambda: delayed_count(vhost) == 1, message="the message in the delay levels")
    assert vhost.depth("orders") == 0
    assert all(not tasks for tasks in inspect_scheduled(platform_env).values())
    wait_for(lambda: events(ledger, "done", task_id), timeout=15, message="the delayed task to run")
    ran = done_at(ledger, task_id)
    assert published + 2 <= ran <= published + 2 + LATE, f"ran {ran - published:.3f}s after publishing"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        pytest.param({"countdown": -1}, ">= 0", id="negative countdown"),
        pytest.param({"countdown": math.nan}, "finite", id="nan countdown"),
        pytest.param({"countdown": 40 * 86400}, "longer than the longest delay", id="too long"),
        pytest.param({"eta": datetime(2030, 1, 1, 12, 0)}, "no timezone", id="naive eta"),
    ],
)
def test_a_delay_the_broker_cannot_hold_is_refused_at_publish_and_nothing_is_sent(
    vhost, client, options: dict, problem: str
):
    """A bad delay raises DelayError in the caller; no message reaches any queue."""
    ok = ok_task(client)
    declared(client)
    with pytest.raises(DelayError, match=problem):
        ok.apply_async(queue="orders", **options)
    with pytest.raises(DelayError, match=problem):
        client.send_task("tests.ok", queue="orders", **options)
    with pytest.raises(DelayError, match=problem):
        ok.apply_many([((), {})], queue="orders", **options)
    assert vhost.depth("orders") == 0
    assert delayed_count(vhost) == 0


def test_lateness_stays_under_250_ms_at_500_delayed_messages_a_second(vhost, client):
    """Given 1,000 messages published at about 500/s (batches of 25) with delays from 50 ms to 4 s,
    each arrives in its work queue no earlier than due; p99 lateness (due time to
    arrival) is at most 250 ms, and arrivals follow due times within that bound."""
    ok = ok_task(client)
    declared(client)
    arrivals: dict[str, float] = {}
    consuming = threading.Event()
    stop = threading.Event()

    def consume() -> None:  # arrival = delivery to a consumer that is always waiting
        with vhost.connect() as connection:
            channel = connection.channel()
            channel.basic_qos(0, 1000, False)
            channel.basic_consume(
                "orders",
                callback=lambda message: arrivals.setdefault(header(message, "id"), time.time()),
                no_ack=True,
            )
            consuming.set()
            while not stop.is_set():
                try:
                    connection.drain_events(timeout=0.2)
                except TimeoutError:
                    pass

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    assert consuming.wait(10)
    rng = random.Random(7)
    due: dict[str, float] = {}
    started = time.monotonic()
    for batch in range(40):  # 25 messages a batch (one delay each), 20 batches a second
        delay = rng.uniform(0.05, 4.0)
        now = time.time()
        for task_id in ok.apply_many([((n,), {}) for n in range(25)], queue="orders", countdown=delay):
            due[task_id] = now + delay
        pace = started + (batch + 1) / 20 - time.monotonic()
        if pace > 0:
            time.sleep(pace)
    rate = 1000 / (time.monotonic() - started)
    wait_for(
        lambda: len(arrivals) >= len(due),
        timeout=30,
        message=lambda: f"{len(due) - len(arrivals)} more arrivals",
    )
    stop.set()
    consumer.join(5)
    lateness = sorted(arrivals[task_id] - due[task_id] for task_id in due)
    assert lateness[0] >= -0.005, f"a message arrived {-lateness[0]:.3f}s early"
    p99 = lateness[int(len(lateness) * 0.99)]
    assert p99 <= 0.25, f"p99 lateness {p99:.3f}s (median {statistics.median(lateness):.3f}s, {rate:.0f}/s)"
    order = sorted(due, key=arrivals.__getitem__)
    # Messages due close together take different paths through the levels (their
    # set bits), so their order holds within the lateness bound, not the 10 ms unit.
    inversions = sum(1 for a, b in zip(order, order[1:], strict=False) if due[b] < due[a] - 0.25)
    assert inversions == 0, f"{inversions} arrivals out of due order by more than 250 ms"
    assert rate >= 400, f"published only {rate:.0f} delayed messages a second"


def test_a_worker_restart_during_the_delay_loses_nothing_and_runs_nothing_early(
    vhost, client, start_worker, tmp_path: Path
):
    """Given 50 tasks delayed 3 s, when their worker stops and a new one starts
    during the delay, every task runs exactly once and none before it was due."""
    ledger = tmp_path / "ledger.txt"
    worker = start_worker()
    declared(client)
    published = time.time()
    ids = [client.send_task("tests.ok", countdown=3, queue="orders").id for _ in range(50)]
    worker.stop()
    start_worker()
    each_ran_once_when_due(ledger, ids, published + 3, timeout=30)


def test_a_retry_with_countdown_waits_in_the_levels_without_holding_back_the_ladder(
    vhost, client, start_worker, tmp_path: Path
):
    """Given a task that retries itself with countdown=4 and, after it, a task
    whose backoff is 0.2 s, the backoff retry is not stuck behind the long wait
    (it does not share a queue with it), and the countdown is honoured."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    declared(client)
    slow = client.send_task("tests.retry_with_countdown", args=[4.0], queue="orders")
    wait_for(lambda: events(ledger, "attempt", slow.id), message="the first attempt")
    fast = client.send_task("tests.flaky", args=[1], queue="orders")
    wait_for(lambda: events(ledger, "done", fast.id), timeout=3, message="the short backoff to come back")
    wait_for(lambda: events(ledger, "done", slow.id), timeout=15, message="the countdown retry")
    first, second = (entry.at for entry in events(ledger, "attempt", slow.id))
    assert 4 <= second - first <= 4 + LATE


def test_retrying_ten_times_through_the_same_levels_and_a_broker_dead_letter_in_between_all_arrive(
    vhost, client, start_worker, platform_env, tmp_path: Path
):
    """Given a task that retries itself 10 times with countdown=0.05 (the same
    level every time), it completes on attempt 11; then, dead-lettered by the
    broker's delivery limit, replayed and delayed again, it still arrives."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    declared(client)
    result = client.send_task("tests.retry_with_countdown", args=[0.05, 10], queue="orders")
    wait_for(lambda: events(ledger, "done", result.id), timeout=30, message="10 countdown retries")
    assert [entry.extra for entry in events(ledger, "attempt", result.id)] == [str(n) for n in range(11)]

    # A message that went through the levels, then was dead-lettered by the broker itself
    # (its x-death names delay levels and payments), is replayed and delays itself again.
    delayed = client.send_task("tests.retry_with_countdown", args=[0.05, 1], countdown=0.1, queue="payments")
    vhost.give_back_until_dead_lettered("payments")
    replayed = run_cli(platform_env, "dlq", "replay", "payments")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    start_worker(queues="payments")
    wait_for(
        lambda: events(ledger, "done", delayed.id), timeout=30, message="the replayed, delayed-again task"
    )
    assert [entry.extra for entry in events(ledger, "attempt", delayed.id)] == ["0", "1"]


def test_a_task_that_expires_while_delayed_is_dead_lettered_as_expired(
    vhost, client, start_worker, tmp_path: Path
):
    """Given a task delayed 2 s that expires after 1 s, it is not run and is in
    orders.dlq as expired when it becomes due."""
    start_worker()
    declared(client)
    result = client.send_task("tests.ok", countdown=2, expires=1, queue="orders")
    wait_for(lambda: vhost.depth("orders.dlq") == 1, timeout=15, message="the expired task in orders.dlq")
    [dead] = vhost.take_all("orders.dlq")
    assert header(dead, "x-error-class") == "expired"
    assert header(dead, "x-task-id") == result.id
    assert not events(tmp_path / "ledger.txt", "done", result.id)


def test_a_foreign_eta_is_sent_on_to_the_levels_not_held_by_the_worker(
    vhost, start_worker, platform_env, tmp_path: Path
):
    """Given a raw message with an eta 2 s ahead (a producer that does not use the
    platform), the worker moves it to the delay levels instead of holding it, and
    it runs when due."""
    ledger = tmp_path / "ledger.txt"
    start_worker()
    body, headers = celery_message("tests.ok")
    due = datetime.now(UTC) + timedelta(seconds=2)
    headers["eta"] = due.isoformat()
    vhost.publish("orders", body, headers=headers)
    wait_for(lambda: delayed_count(vhost) == 1, message="the worker to move it to the delay levels")
    assert vhost.depth("orders") == 0
    assert all(not tasks for tasks in inspect_scheduled(platform_env).values())
    assert vhost.queue_info("orders").get("messages_unacknowledged", 0) == 0
    wait_for(lambda: events(ledger, "done", headers["id"]), timeout=15, message="the postponed task")
    assert done_at(ledger, headers["id"]) >= due.timestamp()


def test_the_lateness_of_delayed_tasks_reaches_the_metrics(
    vhost, client, start_worker, platform_env, tmp_path: Path
):
    """Given five tasks delayed 0.5 s run by a worker, once the worker has stopped
    (it writes its counts on the way out) the metrics endpoint's lateness histogram
    counts five arrivals, and the delay levels' depths are in the metrics too."""
    ledger = tmp_path / "ledger.txt"
    worker = start_worker()
    declared(client)
    ids = [client.send_task("tests.ok", countdown=0.5, queue="orders").id for _ in range(5)]
    client.send_task("tests.ok", countdown=3600, queue="orders")  # still waiting when the metrics are read
    wait_for(
        lambda: all(events(ledger, "done", task_id) for task_id in ids), timeout=15, message="5 delayed tasks"
    )
    worker.stop()
    platform = platform_config(client)
    text = render(collect(platform.settings, platform.topology))
    assert "platform_delay_lateness_seconds_count 5" in text
    assert 'platform_delay_lateness_seconds_bucket{le="+Inf"} 5' in text
    waiting = [line for line in text.splitlines() if line.startswith("platform_delayed_messages{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in waiting) == 1
    assert "platform_delayed_next_due_seconds" in text


def rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl`` on the local node with a deadline (it hangs otherwise, FACTS)."""
    done = subprocess.run(
        ["rabbitmqctl", "--timeout", "60", *args], capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}"


def broker_answers(vhost) -> bool:
    try:
        vhost.depth("orders")
    except (OSError, amqp.exceptions.AMQPError):
        return False
    return True


def test_a_broker_restart_during_the_delay_loses_nothing_and_runs_nothing_early(
    vhost, client, start_worker, tmp_path: Path
):
    """Given 20 tasks delayed 8 s and no worker, when the RabbitMQ node restarts
    during the delay, every task runs exactly once afterwards and none before it
    was due: the delay levels are durable quorum queues of persistent messages."""
    if shutil.which("rabbitmqctl") is None:
        problem = "no rabbitmqctl on this machine (the broker runs elsewhere)"
        if in_ci():
            pytest.fail(f"CI=true and the local broker's rabbitmqctl is required: {problem}")
        pytest.skip(problem)
    ledger = tmp_path / "ledger.txt"
    declared(client)
    published = time.time()
    ids = [client.send_task("tests.ok", countdown=8, queue="orders").id for _ in range(20)]
    client.pool.force_close_all()
    rabbitmqctl("stop_app")
    try:
        rabbitmqctl("start_app")
    finally:
        rabbitmqctl("await_startup")
    wait_for(lambda: broker_answers(vhost), timeout=60, message="the broker to answer again")
    start_worker()
    each_ran_once_when_due(ledger, ids, published + 8, timeout=60)
