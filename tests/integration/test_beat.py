"""Celery beat against the platform: periodic tasks get the whole lifecycle.

Real RabbitMQ (a fresh vhost per test), a real ``celery -A config beat`` and a
real ``celery -A config worker``, both loading the schedule declared in
tests/support/beat_tasks.py. Runs are read from the ledger the tasks write
and from the dead-letter queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import celery
import pytest

from tests.support.beat import BeatProcess
from tests.support.beat_tasks import COUNTDOWN, INTERVAL
from tests.support.broker import AMQP_HOST, AMQP_USER
from tests.support.ledger import Entry, events
from tests.support.messages import header
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker

#: Task modules of both beat and the worker: the schedule is declared in the second.
BEAT_MODULES = "tests.support.tasks,tests.support.beat_tasks"
#: How far two runs of a 2 s entry may be from 2 s apart (beat's wake-up plus a worker's receipt).
SPACING_TOLERANCE = 0.5
#: Seconds a delayed run may start after its due time (the delay levels' hops, a busy machine).
LATE = 1.0


@pytest.fixture
def start_beat(platform_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start ``celery -A config beat`` with ``start_beat(**env_overrides)``; stopped after the test."""
    started: list[BeatProcess] = []

    def start(**env: str) -> BeatProcess:
        beat = BeatProcess({**platform_env, **env}, tmp_path)
        started.append(beat)
        return beat.start()

    yield start
    for beat in started:
        beat.stop()


def by_task(entries: list[Entry]) -> dict[str, list[Entry]]:
    runs: dict[str, list[Entry]] = {}
    for entry in entries:
        runs.setdefault(entry.task_id, []).append(entry)
    return runs


def test_a_beat_schedule_runs_through_the_platform_lifecycle(vhost, start_worker, start_beat, tmp_path: Path):
    """Given a schedule declared in a task module (every 2 s: a task that succeeds,
    one that times out once per run, one that fails for good, one with a 1 s
    countdown) and a worker on orders and payments, when ``celery -A config beat``
    runs against the platform app, then: the first entry runs at least 3 times
    in about 10 s, 2 s apart; every run of the second takes 2 attempts, its
    retry through the broker's retry ladder; every run of the third is in
    orders.dlq with the permanent failure's headers; the fourth waits in the
    broker's delay levels and runs when due; and once beat stops, every run it
    sent has finished, none lost."""
    ledger = tmp_path / "ledger.txt"
    start_worker(queues="orders,payments", PLATFORM_TASK_MODULES=BEAT_MODULES)
    beat = start_beat(PLATFORM_TASK_MODULES=BEAT_MODULES)

    # Beat's banner: the platform app's broker (this test's vhost), a schedule file and pid file under tmp_path.
    banner = beat.log()
    assert f". broker -> amqp://{AMQP_USER}:**@{AMQP_HOST}/{vhost.name}" in banner
    assert ". scheduler -> celery.beat.PersistentScheduler" in banner
    assert f". db -> {beat.schedule_path}" in banner
    assert beat.pid_path.read_text().strip() == str(beat.pid)
    assert f"celery beat v{celery.__version__}" in banner

    wait_for(
        lambda: len(events(ledger, "tick")) >= 3,
        timeout=10,
        message=lambda: f"3 runs of the tick entry; beat log:\n{beat.log()[-3000:]}",
    )
    ticks = events(ledger, "tick")
    gaps = [later.at - earlier.at for earlier, later in pairwise(ticks)]
    assert all(abs(gap - INTERVAL) <= SPACING_TOLERANCE for gap in gaps), f"runs {gaps} s apart"
    assert len({tick.task_id for tick in ticks}) == len(ticks), "every run is a message of its own"
    assert {tick.extra for tick in ticks} == {"beat=True routing_key=orders"}, (
        "sent by beat, routed by module"
    )

    wait_for(
        lambda: len(events(ledger, "retrying-done")) >= 3 and len(events(ledger, "delayed-done")) >= 3,
        timeout=10,
        message="3 runs of the retrying and the delayed entries",
    )
    wait_for(lambda: vhost.depth("orders.dlq") >= 3, timeout=10, message="3 dead letters in orders.dlq")

    # Stop beat between two of its sends: a delayed run starts COUNTDOWN after one, mid-interval.
    delayed_runs = len(events(ledger, "delayed-done"))
    wait_for(lambda: len(events(ledger, "delayed-done")) > delayed_runs, timeout=5, message="a delayed run")
    beat.stop()
    assert not beat.running()
    assert not beat.pid_path.exists(), "beat removed its pid file on SIGTERM"
    assert "Message Error" not in beat.log(), "every publish of beat was confirmed"
    sent = {entry: beat.sent(entry) for entry in ("tick", "retrying-tick", "rejected-tick", "delayed-tick")}
    wait_for(
        lambda: (
            len(events(ledger, "tick")) == sent["tick"]
            and len(events(ledger, "retrying-done")) == sent["retrying-tick"]
            and vhost.depth("orders.dlq") == sent["rejected-tick"]
            and len(events(ledger, "delayed-done")) == sent["delayed-tick"]
        ),
        timeout=15,
        message=lambda: f"every run beat sent ({sent}) to finish; ledger:\n{ledger.read_text()[-3000:]}",
    )

    # Retries: each run is one task id with 2 attempts, the second delivered from the retry ladder.
    attempts = by_task(events(ledger, "retrying-attempt"))
    assert len(attempts) == sent["retrying-tick"]
    for task_id, tries in attempts.items():
        assert [t.extra for t in tries] == [
            "0 x-retry-count=None beat=True routing_key=payments",
            "1 x-retry-count=1 beat=True routing_key=payments",
        ], task_id
        assert len(events(ledger, "retrying-done", task_id)) == 1

    # Delayed delivery: the countdown was held by the broker (no eta reached the worker), never early.
    for run in events(ledger, "delayed-done"):
        published, due_text, eta = run.extra.split(" ")
        due = datetime.fromisoformat(due_text).timestamp()
        assert eta == "eta=None", "the worker never held the delayed message"
        assert COUNTDOWN - 0.002 <= due - float(published) <= COUNTDOWN + 0.1, run
        assert due <= run.at <= due + LATE, f"ran {run.at - due:.3f}s after its due time"

    # Dead letters: one per run of the failing entry, once each, with the permanent failure's headers.
    rejected = by_task(events(ledger, "rejected-attempt"))
    letters = vhost.take_all("orders.dlq")
    assert sorted(header(letter, "id") for letter in letters) == sorted(rejected)
    for letter in letters:
        assert [attempt.extra for attempt in rejected[header(letter, "id")]] == ["0"], "not retried"
        assert header(letter, "x-error-class") == "permanent"
        assert header(letter, "x-error-type") == "workers.errors.PermanentError"
        assert header(letter, "x-error-message") == "the nightly report is misconfigured"
        assert header(letter, "x-task-name") == "tests.beat.orders.rejected_tick"
        assert header(letter, "x-task-id") == header(letter, "id")
        assert header(letter, "x-original-queue") == "orders"
        assert header(letter, "x-retry-count") == 0
        assert header(letter, "celery_beat_task") is True
        assert json.loads(letter.body)[:2] == [[], {}]

    for queue in ("orders", "payments", "payments.retry.1", "payments.dlq"):
        assert vhost.depth(queue) == 0, queue
