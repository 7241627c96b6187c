"""The pure steps of a replay: the copy's headers, select, pacing, the watch schedule, the tally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import amqp
import pytest

from workers.ops.dlq.filters import Filter
from workers.ops.dlq.letters import DeadLetterMessage, group_id
from workers.ops.dlq.refailures import refail_check_due
from workers.ops.dlq.replay_steps import (
    Counted,
    Move,
    Outcome,
    Replayed,
    ReplayProgress,
    ReplayResult,
    Skipped,
    Stop,
    pacing_delay,
    replay_copy,
    replay_headers,
    select,
    tally,
)

NOW = datetime(2026, 11, 5, 12, 30, tzinfo=UTC)
DEATH_TIME = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
X_DEATH = [
    {"reason": "delivery_limit", "queue": "orders", "time": DEATH_TIME, "count": 1, "exchange": ""},
    {"reason": "expired", "queue": "orders.retry.1", "time": DEATH_TIME - timedelta(hours=1), "count": 3},
]


def letter(task_id: str = "id-1", original_queue: str | None = None, **headers: Any) -> DeadLetterMessage:
    base = {
        "x-task-id": task_id,
        "x-task-name": "t.a",
        "x-error-class": "transient",
        "x-error-type": "TimeoutError",
        "x-last-failed-at": (NOW - timedelta(minutes=5)).isoformat(),
    }
    if original_queue:
        base["x-original-queue"] = original_queue
    return DeadLetterMessage(0, b"{}", {}, {**base, **headers})


# ------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (
            {
                "id": "abc",
                "x-death": X_DEATH,
                "x-first-death-reason": "expired",
                "x-first-death-queue": "orders",
            },
            {
                "id": "abc",
                "x-broker-death-reason": "delivery_limit",
                "x-broker-death-queue": "orders",
                "x-broker-death-at": "2026-11-05T12:00:00.000+00:00",
                "x-retry-count": 0,
                "x-replay-count": 1,
            },
        ),
        (
            {
                "id": "abc",
                "x-last-death-reason": "rejected",
                "x-last-death-queue": "orders",
                "x-retry-count": 2,
            },
            {"id": "abc", "x-retry-count": 0, "x-replay-count": 1},
        ),
        (
            {
                "id": "abc",
                "x-broker-death-reason": "expired",
                "x-broker-death-queue": "orders.retry.2",
                "x-broker-death-at": "2026-11-05T11:00:00.000+00:00",
                "x-replay-count": 2,
            },
            {
                "id": "abc",
                "x-broker-death-reason": "expired",
                "x-broker-death-queue": "orders.retry.2",
                "x-broker-death-at": "2026-11-05T11:00:00.000+00:00",
                "x-retry-count": 0,
                "x-replay-count": 3,
            },
        ),
        (
            {"task": "t.a", "id": "abc", "retries": 4, "x-retry-count": 4, "x-delivery-count": 7},
            {"task": "t.a", "id": "abc", "retries": 0, "x-retry-count": 0, "x-replay-count": 1},
        ),
        ({"x-replay-count": "garbage"}, {"x-retry-count": 0, "x-replay-count": 1}),
    ],
    ids=[
        "x-death and x-first-death-* out, their gist in x-broker-death-*",
        "x-last-death-* out",
        "x-broker-death-* kept as they are",
        "a Celery message: retries and x-retry-count reset, x-delivery-count dropped",
        "a malformed replay count starts again at 1",
    ],
)
def test_a_replayed_copy_never_carries_rabbitmqs_dead_letter_history(
    original: dict[str, Any], expected: dict[str, Any]
):
    """Given a dead letter's headers, when its replayed copy's headers are made,
    then x-death, x-first-death-* and x-last-death-* are gone (RabbitMQ < 4.0
    would drop the copy as a dead-letter cycle), x-broker-death-* are kept or
    written, and the copy gets a fresh retry budget and one more replay."""
    before = dict(original)
    assert replay_headers(original) == expected
    assert original == before, "the dead letter's headers are not changed"


def test_a_replayed_copy_keeps_body_and_properties_but_not_a_stale_ttl_or_user_id():
    """Given a dead letter with a TTL, a user id and an x-death, when its copy is
    made, then the body and the other properties are the same, the TTL and user
    id are gone, and the headers are replay_headers' (no x-death)."""
    message = amqp.Message(
        b"\xff\x00 body",
        content_type="application/json",
        correlation_id="abc",
        delivery_mode=2,
        expiration="60000",
        user_id="someone",
        application_headers={"id": "abc", "x-death": X_DEATH},
    )
    copy = replay_copy(message)
    assert copy.body == b"\xff\x00 body"
    assert {k: v for k, v in copy.properties.items() if k != "application_headers"} == {
        "content_type": "application/json",
        "correlation_id": "abc",
        "delivery_mode": 2,
    }
    assert copy.properties["application_headers"] == replay_headers({"id": "abc", "x-death": X_DEATH})
    assert "x-death" in message.properties["application_headers"], "the dead letter is not changed"


# ------------------------------------------------------------------- select


@pytest.mark.parametrize(
    ("selection", "dry_run", "dead", "decision"),
    [
        (Filter(error_classes=("permanent",)), False, letter(), Skipped()),
        (Filter(error_classes=("permanent",)), True, letter(), Skipped()),
        (Filter(), True, letter(), Counted()),
        (Filter(), False, letter(), Move("orders")),
        (Filter(ids=("id-1",)), False, letter(original_queue="payments"), Move("payments")),
        (
            Filter(error_classes=("poison",)),
            False,
            DeadLetterMessage(0, b"", {}, {"x-death": X_DEATH}),
            Move("orders"),
        ),
    ],
    ids=[
        "not matching: left in place",
        "not matching, dry run: left in place",
        "matching, dry run: counted",
        "matching: moved to the DLQ's queue",
        "matching: moved to its x-original-queue",
        "a broker-made poison letter matches --error-class poison",
    ],
)
def test_select_leaves_counts_or_moves_a_letter(
    selection: Filter, dry_run: bool, dead: DeadLetterMessage, decision: Skipped | Counted | Move
):
    """Given a filter, a dry-run flag and a letter of orders.dlq, when the replay
    selects, then the decision is the row's."""
    assert select(dead, selection, NOW, dry_run=dry_run, queue="orders") == decision


# ------------------------------------------------------------------- pacing and the watch


@pytest.mark.parametrize(
    ("started", "replayed", "rate", "now", "delay"),
    [
        (100.0, 0, None, 100.0, 0.0),
        (100.0, 50, None, 100.0, 0.0),
        (100.0, 0, 10.0, 100.0, 0.0),
        (100.0, 5, 10.0, 100.1, 0.4),
        (100.0, 5, 10.0, 100.5, 0.0),
        (100.0, 5, 10.0, 101.0, 0.0),
        (100.0, 20, 4.0, 103.0, 2.0),
    ],
)
def test_the_pacing_delay_keeps_publishes_at_most_rate_per_second_since_the_start(
    started: float, replayed: int, rate: float | None, now: float, delay: float
):
    """Given the start, the letters replayed so far and a rate, when the next
    publish is due, then it waits until replayed / rate seconds after the start
    (never a negative wait; no wait without a rate)."""
    assert pacing_delay(started, replayed, rate, now) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("scanned", "total", "due"),
    [
        (1, 25, False),
        (9, 25, False),
        (10, 25, True),
        (20, 25, True),
        (24, 25, False),
        (25, 25, True),
        (3, 3, True),
    ],
)
def test_the_refail_watch_is_read_every_ten_letters_and_at_the_last(scanned: int, total: int, due: bool):
    """Given letters scanned of a total, when deciding whether to read the watch,
    then it is due every 10 and at the last letter."""
    assert refail_check_due(scanned, total) is due


# ------------------------------------------------------------------- the tally


@pytest.mark.parametrize(
    ("outcome", "counts", "task_ids", "stopped"),
    [
        (Skipped(), (1, 0, 0), [], (None, "")),
        (Counted(), (1, 1, 0), ["id-1"], (None, "")),
        (Replayed("orders"), (1, 1, 1), ["id-1"], (None, "")),
        (
            Stop("publish-failed", "MessageNacked: nacked"),
            (1, 1, 0),
            [],
            ("publish-failed", "MessageNacked: nacked"),
        ),
    ],
    ids=["skipped", "counted in a dry run", "replayed", "its publish failed"],
)
def test_the_tally_counts_each_outcome_into_the_result(
    outcome: Outcome, counts: tuple[int, int, int], task_ids: list[str], stopped: tuple[str | None, str]
):
    """Given an empty result, when one letter's outcome is tallied, then scanned,
    matched, replayed, task ids, groups and the stop reason are the row's."""
    result = ReplayResult("orders", False, 3, 0, 0, 0, 0, None, 0.0)
    tally(result, letter(), outcome)
    assert (result.scanned, result.matched, result.replayed) == counts
    assert result.task_ids == task_ids
    assert result.groups == ({group_id("t.a", "TimeoutError"): 1} if counts[1] else {})
    assert (result.stopped, result.error) == stopped


def test_progress_follows_the_results_counts():
    """Given a result part way through, when progress follows it, then it shows the same counts."""
    result = ReplayResult("orders", False, 30, 12, 8, 7, 2, None, 0.0)
    state = ReplayProgress(30)
    assert state.follow(result) is state
    assert (state.total, state.scanned, state.matched, state.replayed, state.refailed) == (30, 12, 8, 7, 2)
