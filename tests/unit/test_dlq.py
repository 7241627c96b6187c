"""Pure DLQ logic: grouping, trend, filters, durations, replay headers, the re-failure rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workers.ops.dlq import (
    DeadLetterMessage,
    Filter,
    dlq_stats,
    error_groups,
    group_id,
    hourly_trend,
    parse_duration,
    refail_limit_reached,
    replay_headers,
)

NOW = datetime(2026, 11, 5, 12, 30, tzinfo=UTC)


def letter(
    task="t.a", error_type="ValueError", error_class="permanent", minutes_ago=5, task_id="id", **extra
):
    headers = {
        "x-task-name": task,
        "x-task-id": task_id,
        "x-error-type": error_type,
        "x-error-class": error_class,
        "x-error-message": f"{error_type}!",
        "x-last-failed-at": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        **extra,
    }
    return DeadLetterMessage(0, b"{}", {}, headers)


def test_letters_are_grouped_by_task_and_error_type_biggest_group_first():
    """Same task and error type make one group; groups are sorted by size."""
    groups = error_groups(
        [letter(), letter(error_type="KeyError"), letter(), letter(task="t.b"), letter(minutes_ago=90)]
    )
    assert [(g.task_name, g.error_type, g.count) for g in groups] == [
        ("t.a", "ValueError", 3),
        ("t.a", "KeyError", 1),
        ("t.b", "ValueError", 1),
    ]
    assert groups[0].id == group_id("t.a", "ValueError") and len(groups[0].id) == 8
    assert groups[0].oldest == NOW - timedelta(minutes=90)


def test_the_hourly_trend_counts_letters_per_utc_hour_over_the_last_24_hours():
    """The last bucket is the current hour; letters older than 24 h are left out."""
    trend = hourly_trend(
        [letter(minutes_ago=5), letter(minutes_ago=20), letter(minutes_ago=70), letter(minutes_ago=3000)], NOW
    )
    assert len(trend) == 24
    assert trend[-1] == (datetime(2026, 11, 5, 12, tzinfo=UTC), 2)
    assert trend[-2] == (datetime(2026, 11, 5, 11, tzinfo=UTC), 1)
    assert sum(count for _, count in trend) == 3


def test_stats_count_the_oldest_and_the_inflow_of_the_last_hour():
    """Inflow counts letters dead-lettered within the hour; the oldest age is measured from now."""
    stats = dlq_stats("orders", [letter(minutes_ago=5), letter(minutes_ago=120)], NOW)
    assert (stats.count, stats.inflow_last_hour, stats.oldest_age_seconds) == (2, 1, 7200.0)
    assert stats.dead_letter_queue == "orders.dlq"


def test_a_broker_dead_lettered_message_counts_as_poison_with_its_x_death_time():
    """Without platform headers, x-death gives the class, type and time."""
    death_time = datetime(2026, 11, 5, 12, 0)
    dead = DeadLetterMessage(
        0, b"", {}, {"x-death": [{"reason": "delivery_limit", "time": death_time, "queue": "orders"}]}
    )
    assert (dead.error_class, dead.error_type) == ("poison", "x-death:delivery_limit")
    assert dead.dead_lettered_at == death_time.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("selection", "matches"),
    [
        (Filter(), True),
        (Filter(ids=("id",)), True),
        (Filter(ids=("other",)), False),
        (Filter(groups=(group_id("t.a", "ValueError"),)), True),
        (Filter(tasks=("t.b",)), False),
        (Filter(error_classes=("permanent", "poison")), True),
        (Filter(error_types=("KeyError",)), False),
        (Filter(older_than=timedelta(minutes=1)), True),
        (Filter(older_than=timedelta(minutes=10)), False),
        (Filter(newer_than=timedelta(minutes=10)), True),
        (Filter(newer_than=timedelta(minutes=1)), False),
        (Filter(tasks=("t.a",), error_classes=("transient",)), False),
    ],
)
def test_filters_take_a_letter_only_when_every_set_criterion_holds(selection: Filter, matches: bool):
    """Criteria of different kinds must all hold; an empty filter takes everything."""
    assert selection.matches(letter(), NOW) is matches


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129600), (" 3H ", 10800)],
)
def test_durations_accept_seconds_minutes_hours_and_days(text: str, seconds: float):
    """A number with an optional unit s, m, h or d."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "-5m", "5w", "nan", "inf"])
def test_durations_refuse_anything_else_with_a_clear_message(text: str):
    """Bad durations raise ValueError that shows the accepted forms."""
    with pytest.raises(ValueError, match="is not a duration like"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("refailed", "replayed", "ratio", "stop"),
    [
        (1, 1, 0.5, False),
        (5, 8, 0.5, False),
        (6, 8, 0.5, True),
        (10, 30, 0.5, False),
        (16, 30, 0.5, True),
        (1, 40, 0.0, True),
        (0, 40, 0.0, False),
    ],
)
def test_a_replay_stops_when_refailures_exceed_the_ratio_of_at_least_ten_messages(
    refailed: int, replayed: int, ratio: float, stop: bool
):
    """The first failure alone is not 100%: the ratio is judged on at least 10 messages."""
    assert refail_limit_reached(refailed, replayed, ratio) is stop


def test_a_replayed_copy_keeps_its_id_gains_a_replay_count_and_a_fresh_retry_budget():
    """Retry counters go back to 0, x-replay-count grows by one, the rest is kept."""
    original = {
        "id": "abc",
        "retries": 5,
        "x-retry-count": 5,
        "x-replay-count": 1,
        "x-delivery-count": 3,
        "x-error-class": "transient",
    }
    copy = replay_headers(original)
    assert copy == {
        "id": "abc",
        "retries": 0,
        "x-retry-count": 0,
        "x-replay-count": 2,
        "x-error-class": "transient",
    }
    assert original["retries"] == 5, "the original is not changed"
