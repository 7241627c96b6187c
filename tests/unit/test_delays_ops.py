"""The operators' view of delayed tasks without a broker: routing keys, records, stats, the cancel copy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import amqp
import pytest

from config.app import create_app
from config.topology import DELAY_LEVELS, DELAYED_UNROUTABLE, delay_level
from tests.unit.fakes import unit_settings
from workers.delivery.delays import delay_routing_key
from workers.delivery.headers import DELAY_DUE_AT
from workers.ops.cli.delays import due_text, wait_text
from workers.ops.delays import (
    DelayedTask,
    DelayKeyError,
    DelayRoute,
    DelayStats,
    cancel_failure,
    cancelled_copy,
    delayed_task,
    due_time,
    level_stats,
    level_wait_ms,
    matches,
    parse_delay_routing_key,
    soonest_first,
)
from workers.ops.flower.dlq_pages import PlatformBrokerView

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def bits(units: int) -> str:
    """The 28 delay words of ``units``, as a routing key starts."""
    return ".".join(format(units, f"0{DELAY_LEVELS}b"))


def task(
    task_id: str = "t1",
    due: datetime | None = NOW,
    level: int = 3,
    position: int = 0,
    target: str | None = "orders",
) -> DelayedTask:
    return DelayedTask(task_id, "tests.ok", target, due, level, position, f"{bits(8)}.{target}")


# ------------------------------------------------------------------ routing keys


@pytest.mark.parametrize(
    ("key", "route"),
    [
        pytest.param(f"{bits(1)}.orders", DelayRoute(1, "orders"), id="level 0 only"),
        pytest.param(f"{bits(6000)}.orders", DelayRoute(6000, "orders"), id="60 s"),
        pytest.param(f"{bits(2**27)}.payments", DelayRoute(2**27, "payments"), id="highest level only"),
        pytest.param(
            f"{bits(2**DELAY_LEVELS - 1)}.email.events",
            DelayRoute(2**DELAY_LEVELS - 1, "email.events"),
            id="every bit, a target with a dot",
        ),
        pytest.param(f"{bits(5)}.a.b.c", DelayRoute(5, "a.b.c"), id="the target is everything after word 28"),
    ],
)
def test_a_delay_routing_key_gives_the_delay_and_the_target_queue(key: str, route: DelayRoute) -> None:
    """Given a routing key of 28 delay bits and a queue,
    when it is parsed,
    then the bits are the delay in units and the rest, dots and all, is the target."""
    assert parse_delay_routing_key(key) == route


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("orders", id="no bits"),
        pytest.param(f"{bits(3)}", id="bits but no target"),
        pytest.param(f"{bits(3)}.", id="an empty target"),
        pytest.param("0." * 27 + "orders", id="27 bits"),
        pytest.param("0." * 27 + "2.orders", id="a bit that is 2"),
        pytest.param("x." * 28 + "orders", id="words that are not bits"),
    ],
)
def test_a_key_that_is_not_a_delay_key_is_refused_by_name(key: str) -> None:
    """Given a routing key that is not 28 bits and a queue, when it is parsed, then DelayKeyError says so."""
    with pytest.raises(DelayKeyError, match="routing key"):
        parse_delay_routing_key(key)


@pytest.mark.parametrize("units", [1, 2, 100, 6000, 360_000, 2**DELAY_LEVELS - 1])
@pytest.mark.parametrize("queue", ["orders", "email.events"])
def test_every_key_the_publisher_writes_parses_back_to_its_delay_and_queue(units: int, queue: str) -> None:
    """Given the routing key the platform publishes a delay with, when parsed, then it is that delay and queue,
    and its levels are the bits that are set."""
    route = parse_delay_routing_key(delay_routing_key(units, queue))
    assert route == DelayRoute(units, queue)
    assert sum(2**level for level in route.levels) == units


# ------------------------------------------------------------------ records


@pytest.mark.parametrize(
    ("value", "due"),
    [
        pytest.param(
            "2026-12-01T12:00:59.120+00:00", NOW + timedelta(seconds=59.12), id="the publisher's form"
        ),
        pytest.param(b"2026-12-01T12:01:00+00:00", NOW + timedelta(minutes=1), id="bytes"),
        pytest.param("2026-12-01T13:00:00+01:00", NOW, id="another offset, made UTC"),
        pytest.param("2026-12-01T12:00:00", NOW, id="no offset: read as UTC"),
        pytest.param(NOW.astimezone(timezone(timedelta(hours=-5))), NOW, id="a datetime"),
        pytest.param("soon", None, id="not a time"),
        pytest.param(None, None, id="missing"),
        pytest.param(17, None, id="a number"),
    ],
)
def test_the_due_time_is_read_from_x_delay_due_at_as_utc(value: object, due: datetime | None) -> None:
    """Given an x-delay-due-at value, when read, then it is an aware UTC time, or None when it can't be one."""
    moment = due_time(value)
    assert moment == due
    assert moment is None or moment.utcoffset() == timedelta(0)


CELERY_HEADERS = {"id": "abc", "task": "tests.ok", DELAY_DUE_AT: "2026-12-01T12:01:00.000+00:00"}


@pytest.mark.parametrize(
    ("headers", "key", "expected"),
    [
        pytest.param(
            CELERY_HEADERS,
            f"{bits(6000)}.orders",
            ("abc", "tests.ok", "orders", NOW + timedelta(minutes=1), (12, 10, 9, 8, 6, 5, 4)),
            id="a Celery task",
        ),
        pytest.param(
            {"x-task-id": "r1", "x-task-name": "tests.flaky"},
            f"{bits(3)}.email.events",
            ("r1", "tests.flaky", "email.events", None, (1, 0)),
            id="the platform's headers only, no due time",
        ),
        pytest.param(
            CELERY_HEADERS,
            "orders",
            ("abc", "tests.ok", None, NOW + timedelta(minutes=1), ()),
            id="a routing key that is not a delay key: no target",
        ),
        pytest.param({}, f"{bits(1)}.orders", ("", "", "orders", None, (0,)), id="no headers at all"),
    ],
)
def test_a_browsed_message_becomes_a_record_of_id_name_target_due_and_levels(
    headers: dict, key: str, expected: tuple
) -> None:
    """Given a delay level message's headers and routing key,
    when it is made a record,
    then task id and name come from Celery's headers (or the platform's), target and levels from the key."""
    record = delayed_task(headers, key, level=12, position=4)
    assert (record.task_id, record.task_name, record.target_queue, record.due_at, record.levels) == expected
    assert (record.level, record.position, record.delay_queue) == (12, 4, "platform.delay.12")


def test_a_record_in_json_says_how_long_until_it_is_due() -> None:
    """Given a task due in 90 s, when recorded for JSON, then times are ISO text and the wait is in seconds."""
    record = task(due=NOW + timedelta(seconds=90)).record(NOW)
    assert record["due_at"] == "2026-12-01T12:01:30+00:00"
    assert record["due_in_seconds"] == 90
    assert record["delay_queue"] == "platform.delay.3"


@pytest.mark.parametrize(
    ("task_id", "queue", "selected"),
    [
        (None, None, True),
        ("t1", None, True),
        ("t2", None, False),
        (None, "orders", True),
        (None, "payments", False),
        ("t1", "orders", True),
        ("t1", "payments", False),
    ],
)
def test_peek_selects_by_task_id_and_target_queue(
    task_id: str | None, queue: str | None, selected: bool
) -> None:
    """Given task t1 going to orders, when filtered, then only a matching id and queue (or none given) select it."""
    assert matches(task(), task_id, queue) is selected


def test_delayed_tasks_are_listed_soonest_due_first_unknown_last_and_cut_to_the_limit() -> None:
    """Given tasks in several levels, some without a due time,
    when listed, then the soonest due comes first, unknown ones last, at most limit of them."""
    later = task("later", NOW + timedelta(hours=1), level=20)
    sooner = task("sooner", NOW + timedelta(seconds=5), level=2)
    unknown = task("unknown", None, level=0)
    middle = task("middle", NOW + timedelta(minutes=1), level=12)
    assert [t.task_id for t in soonest_first([unknown, later, sooner, middle])] == [
        "sooner",
        "middle",
        "later",
        "unknown",
    ]
    assert [t.task_id for t in soonest_first([unknown, later, sooner, middle], limit=2)] == [
        "sooner",
        "middle",
    ]


def test_a_message_met_in_two_levels_while_scanning_is_listed_once_where_it_was_seen_last() -> None:
    """Given the same message seen in level 12 and then (having moved on) in level 10,
    when listed, then it is there once, in level 10."""
    first = task("t1", NOW, level=12)
    moved = task("t1", NOW, level=10)
    other = task("t2", NOW, level=11)
    listed = soonest_first([first, other, moved])
    assert [(t.task_id, t.level) for t in listed] == [("t2", 11), ("t1", 10)]


# ------------------------------------------------------------------ stats


@pytest.mark.parametrize(
    ("messages", "browsed_dues", "next_due", "truncated"),
    [
        pytest.param(0, [], None, False, id="empty"),
        pytest.param(None, [], None, False, id="missing queue"),
        pytest.param(
            3,
            [NOW + timedelta(seconds=9), NOW + timedelta(seconds=2), None],
            NOW + timedelta(seconds=2),
            False,
            id="the soonest of the browsed, unknown ignored",
        ),
        pytest.param(5, [NOW, NOW + timedelta(1)], NOW, True, id="more messages than browsed"),
    ],
)
def test_a_levels_stats_are_its_depth_and_the_soonest_due_of_what_was_browsed(
    messages: int | None, browsed_dues: list, next_due: datetime | None, truncated: bool
) -> None:
    """Given a level's depth and the tasks browsed in it, when summed up,
    then next due is the soonest known due time and truncated says whether all were browsed."""
    stats = level_stats(7, messages, [task(f"t{i}", due, level=7) for i, due in enumerate(browsed_dues)])
    assert (stats.messages, stats.browsed, stats.next_due_at, stats.truncated) == (
        messages,
        len(browsed_dues),
        next_due,
        truncated,
    )
    assert (stats.queue, stats.wait_ms) == ("platform.delay.7", 1280)


def test_the_stats_of_all_levels_sum_the_depths_and_take_the_soonest_due_of_any_level() -> None:
    """Given levels with messages, an empty one and a missing one,
    when summed up, then messages is the sum of known depths, the next due the soonest of all levels,
    its seconds counted from now, and the missing queue named."""
    stats = DelayStats(
        (
            level_stats(14, 1, [task("a", NOW + timedelta(minutes=5), level=14)]),
            level_stats(12, 2, [task("b", NOW + timedelta(seconds=59), level=12), task("c", None, level=12)]),
            level_stats(3, 0, []),
            level_stats(2, None, []),
        ),
        unroutable=4,
    )
    assert stats.messages == 3
    assert stats.next_due_at == NOW + timedelta(seconds=59)
    assert stats.next_due_seconds(NOW) == 59
    assert stats.missing == ["platform.delay.2"]
    record = stats.record(NOW)
    assert record["unroutable"] == {"queue": DELAYED_UNROUTABLE, "messages": 4}
    assert record["next_due_in_seconds"] == 59
    assert [level["messages"] for level in record["levels"]] == [1, 2, 0, None]


def test_no_delayed_messages_means_no_next_due() -> None:
    """Given empty levels, when summed up, then there is no next due time (None, not zero)."""
    stats = DelayStats(tuple(level_stats(level, 0, []) for level in range(DELAY_LEVELS)), unroutable=0)
    assert (stats.messages, stats.next_due_at, stats.next_due_seconds(NOW)) == (0, None, None)


@pytest.mark.parametrize(("level", "ms"), [(0, 10), (1, 20), (12, 40_960), (27, 10 * 2**27)])
def test_level_l_waits_ten_ms_times_two_to_the_l(level: int, ms: int) -> None:
    assert level_wait_ms(level) == ms


# ------------------------------------------------------------------ the cancel copy


def test_a_cancels_failure_names_who_the_level_and_the_due_time() -> None:
    """Given a task in level 12 due at noon, when alice cancels it,
    then its failure is class cancelled, type DelayCancelled, and the message says who, where and when."""
    failure = cancel_failure(task(due=NOW, level=12), "alice@ops")
    assert (failure.error_class, failure.error_type) == ("cancelled", "DelayCancelled")
    assert failure.error_message == (
        "cancelled by alice@ops while waiting in platform.delay.12; it was due at 2026-12-01T12:00:00.000+00:00"
    )
    assert "an unknown time" in cancel_failure(task(due=None), "alice@ops").error_message


def test_the_cancelled_copy_keeps_body_and_properties_and_gains_the_failure_headers() -> None:
    """Given a delayed message that has passed through levels (x-death) and been browsed (x-delivery-count),
    when its dead letter is made,
    then the body is byte for byte, properties are kept (no expiration), the failure headers name the
    target queue, and the broker's history is gone."""
    body = b'[[1], {}, {"callbacks": null}]\xff'
    key = f"{bits(6000)}.orders"
    headers = {
        **CELERY_HEADERS,
        "retries": 2,
        "x-retry-count": 2,
        "x-delivery-count": 3,
        "x-death": [{"queue": "platform.delay.13", "reason": "expired", "count": 1, "time": NOW}],
    }
    message = amqp.Message(
        body,
        content_type="application/json",
        content_encoding="utf-8",
        correlation_id="abc",
        delivery_mode=2,
        expiration="1000",
        application_headers=headers,
    )
    message.delivery_info = {"routing_key": key, "exchange": "platform.delay.13"}
    record = delayed_task(headers, key, level=12, position=0)
    copy = cancelled_copy(message, record, "alice@ops", now=NOW)
    assert copy.body == body
    assert {
        k: copy.properties.get(k) for k in ("content_type", "correlation_id", "delivery_mode", "expiration")
    } == {
        "content_type": "application/json",
        "correlation_id": "abc",
        "delivery_mode": 2,
        "expiration": None,
    }
    written = copy.properties["application_headers"]
    assert {
        k: written[k]
        for k in (
            "x-error-class",
            "x-error-type",
            "x-original-queue",
            "x-original-exchange",
            "x-original-routing-key",
            "x-task-id",
            "x-task-name",
            "x-retry-count",
            "retries",
            "x-worker",
            "x-last-failed-at",
            DELAY_DUE_AT,
        )
    } == {
        "x-error-class": "cancelled",
        "x-error-type": "DelayCancelled",
        "x-original-queue": "orders",
        "x-original-exchange": "platform.delay.13",
        "x-original-routing-key": key,
        "x-task-id": "abc",
        "x-task-name": "tests.ok",
        "x-retry-count": 2,
        "retries": 2,
        "x-worker": "alice@ops",
        "x-last-failed-at": "2026-12-01T12:00:00.000+00:00",
        DELAY_DUE_AT: CELERY_HEADERS[DELAY_DUE_AT],
    }
    assert "x-death" not in written and "x-delivery-count" not in written
    assert written["x-broker-death-queue"] == "platform.delay.13"


# ------------------------------------------------------------------ how the tools show them


@pytest.mark.parametrize(
    ("due", "text"),
    [
        (None, "-"),
        (NOW + timedelta(seconds=59.5), "2026-12-01T12:00:59.500+00:00 (in 59s)"),
        (NOW + timedelta(hours=2, minutes=5), "2026-12-01T14:05:00.000+00:00 (in 2h5m)"),
        (NOW - timedelta(seconds=3), "2026-12-01T11:59:57.000+00:00 (late 3s)"),
    ],
)
def test_a_due_time_shows_as_iso_utc_and_how_far_off_it_is(due: datetime | None, text: str) -> None:
    assert due_text(due, NOW) == text


@pytest.mark.parametrize(
    ("ms", "text"), [(10, "10ms"), (640, "640ms"), (1280, "1.3s"), (40_960, "40s"), (10 * 2**27, "15d12h")]
)
def test_a_levels_wait_shows_in_its_largest_units(ms: int, text: str) -> None:
    assert wait_text(ms) == text


# ------------------------------------------------------------------ Flower


def test_flowers_broker_page_lists_the_delay_levels_and_the_unroutable_queue(tmp_path: Path) -> None:
    """Given no worker consuming anything, when Flower's broker page asks which queues to show,
    then every level and the unroutable catch-all are there, beside the work, retry and dead-letter queues."""
    app = create_app(unit_settings(tmp_path), main="flower-test")
    try:
        view = object.__new__(PlatformBrokerView)
        view.application = SimpleNamespace(workers={}, capp=app)
        names = view.get_active_queue_names()
    finally:
        app.close()
    assert {delay_level(level) for level in range(DELAY_LEVELS)} <= set(names)
    assert DELAYED_UNROUTABLE in names
    assert {"orders", "orders.retry.1", "orders.dlq", "payments.dlq"} <= set(names)
    assert names == sorted(names)
