"""failure_headers(): the metadata a retried or dead-lettered message carries."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from workers.delivery import headers as h
from workers.delivery.headers import (
    MESSAGE_LIMIT,
    Failure,
    Origin,
    bounded,
    delivery_count,
    failure_headers,
    retry_count,
    utc_timestamp,
)

ORIGIN = Origin(queue="orders", exchange="platform.tasks", routing_key="orders")
FAILURE = Failure(
    error_class="transient",
    error_type="TimeoutError",
    error_message="read timed out",
    traceback="Traceback (most recent call last):\n  ...\nTimeoutError: read timed out\n",
)
FIRST = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
LATER = FIRST + timedelta(seconds=7)
FIRST_STAMP = "2024-05-01T12:00:00.123+00:00"
LATER_STAMP = "2024-05-01T12:00:07.123+00:00"

#: Headers of a Celery protocol 2 task message as it arrives.
CELERY_HEADERS: dict[str, Any] = {
    "lang": "py",
    "task": "tasks.orders.create_order",
    "id": "4f0c1a7e-0000-4000-8000-000000000001",
    "root_id": "4f0c1a7e-0000-4000-8000-000000000001",
    "retries": 0,
    "x-delivery-count": 2,
}


def build(original: dict[str, Any] | None, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "failure": FAILURE,
        "origin": ORIGIN,
        "retries": 1,
        "worker": "celery@worker-1",
        "traceback_limit": 4000,
        "now": FIRST,
    }
    options.update(overrides)
    return failure_headers(original, **options)


def test_every_header_name_of_the_design_is_a_constant() -> None:
    assert {
        h.ORIGINAL_QUEUE,
        h.ORIGINAL_EXCHANGE,
        h.ORIGINAL_ROUTING_KEY,
        h.TASK_NAME,
        h.TASK_ID,
        h.ERROR_CLASS,
        h.ERROR_TYPE,
        h.ERROR_MESSAGE,
        h.ERROR_TRACEBACK,
        h.RETRY_COUNT,
        h.FIRST_FAILED_AT,
        h.LAST_FAILED_AT,
        h.WORKER,
    } == {
        "x-original-queue",
        "x-original-exchange",
        "x-original-routing-key",
        "x-task-name",
        "x-task-id",
        "x-error-class",
        "x-error-type",
        "x-error-message",
        "x-error-traceback",
        "x-retry-count",
        "x-first-failed-at",
        "x-last-failed-at",
        "x-worker",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("x-original-queue", "orders", id="x-original-queue"),
        pytest.param("x-original-exchange", "platform.tasks", id="x-original-exchange"),
        pytest.param("x-original-routing-key", "orders", id="x-original-routing-key"),
        pytest.param("x-task-name", "tasks.orders.create_order", id="x-task-name"),
        pytest.param("x-task-id", "4f0c1a7e-0000-4000-8000-000000000001", id="x-task-id"),
        pytest.param("x-error-class", "transient", id="x-error-class"),
        pytest.param("x-error-type", "TimeoutError", id="x-error-type"),
        pytest.param("x-error-message", "read timed out", id="x-error-message"),
        pytest.param("x-error-traceback", FAILURE.traceback, id="x-error-traceback"),
        pytest.param("x-retry-count", 1, id="x-retry-count"),
        pytest.param("x-first-failed-at", FIRST_STAMP, id="x-first-failed-at"),
        pytest.param("x-last-failed-at", FIRST_STAMP, id="x-last-failed-at"),
        pytest.param("x-worker", "celery@worker-1", id="x-worker"),
        pytest.param("retries", 1, id="celery retries follows x-retry-count"),
        pytest.param("lang", "py", id="original headers kept"),
        pytest.param("root_id", "4f0c1a7e-0000-4000-8000-000000000001", id="celery root_id kept"),
    ],
)
def test_a_first_failure_gets_every_design_header(name: str, expected: Any) -> None:
    assert build(CELERY_HEADERS)[name] == expected


def test_the_delivery_count_is_dropped() -> None:
    assert "x-delivery-count" not in build(CELERY_HEADERS)


def earlier_failure() -> dict[str, Any]:
    """Headers of a message that already failed once and came back from its delay queue."""
    return build(CELERY_HEADERS, retries=1, now=FIRST)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("x-first-failed-at", FIRST_STAMP, id="first failure time kept"),
        pytest.param("x-last-failed-at", LATER_STAMP, id="last failure time moves"),
        pytest.param("x-original-queue", "orders", id="original queue kept"),
        pytest.param("x-original-exchange", "platform.tasks", id="original exchange kept"),
        pytest.param("x-original-routing-key", "orders", id="original routing key kept"),
        pytest.param("x-retry-count", 2, id="retry count updated"),
        pytest.param("retries", 2, id="celery retries updated"),
        pytest.param("x-error-class", "permanent", id="error class of the latest failure"),
        pytest.param("x-error-type", "ValueError", id="error type of the latest failure"),
        pytest.param("x-worker", "celery@worker-2", id="worker of the latest failure"),
    ],
)
def test_a_later_failure_keeps_the_first_failure_time_and_origin(name: str, expected: Any) -> None:
    later = build(
        earlier_failure(),
        failure=Failure("permanent", "ValueError", "bad total"),
        origin=Origin(queue="orders.retry.1", exchange="", routing_key="orders.retry.1"),
        retries=2,
        worker="celery@worker-2",
        now=LATER,
    )
    assert later[name] == expected


def test_an_empty_original_exchange_is_kept_from_the_first_failure() -> None:
    """The default exchange is named '' and must not be replaced by a later origin."""
    first = build({}, origin=Origin(queue="orders", exchange="", routing_key="orders"))
    later = build(first, origin=ORIGIN, now=LATER)
    assert later["x-original-exchange"] == ""


@pytest.mark.parametrize(
    ("original", "name", "expected"),
    [
        pytest.param(None, "x-task-name", "", id="no headers: empty task name"),
        pytest.param(None, "x-task-id", "", id="no headers: empty task id"),
        pytest.param({"x-task-name": "t.n", "x-task-id": "i"}, "x-task-name", "t.n", id="x-task-name kept"),
        pytest.param({"x-task-name": "t.n", "x-task-id": "i"}, "x-task-id", "i", id="x-task-id kept"),
    ],
)
def test_task_name_and_id_fall_back_to_earlier_headers_or_empty(
    original: dict[str, Any] | None, name: str, expected: str
) -> None:
    assert build(original)[name] == expected


def test_celery_retries_header_is_only_added_to_celery_messages() -> None:
    assert "retries" not in build({"x-task-name": "t.n"})
    assert "retries" not in build(None)


@pytest.mark.parametrize(
    "original",
    [
        pytest.param(CELERY_HEADERS, id="celery message"),
        pytest.param({"x-first-failed-at": "t", "x-delivery-count": 5, "nested": {"a": [1]}}, id="raw"),
    ],
)
def test_the_input_mapping_is_not_mutated(original: dict[str, Any]) -> None:
    before = copy.deepcopy(original)
    result = build(original, retries=3, now=LATER)
    assert original == before
    assert result is not original


TRACEBACK_LIMITS = [pytest.param(limit, id=f"limit {limit}") for limit in (100, 500, 4000)]


@pytest.mark.parametrize("limit", TRACEBACK_LIMITS)
def test_a_long_traceback_is_bounded_keeping_its_tail(limit: int) -> None:
    traceback = "".join(f'  File "x.py", line {n}, in f\n' for n in range(5000)) + "TimeoutError: END\n"
    result = build(
        CELERY_HEADERS, failure=Failure("transient", "TimeoutError", "x", traceback), traceback_limit=limit
    )
    kept = result["x-error-traceback"]
    assert len(kept) == limit
    assert kept.endswith("TimeoutError: END\n")
    assert "truncated" in kept


def test_a_long_message_is_bounded_keeping_its_tail() -> None:
    message = "x" * (MESSAGE_LIMIT * 5) + "TAIL"
    kept = build(None, failure=Failure("unknown", "RuntimeError", message))["x-error-message"]
    assert len(kept) == MESSAGE_LIMIT
    assert kept.endswith("TAIL")


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("", 100, "", id="empty"),
        pytest.param("short", 100, "short", id="short text unchanged"),
        pytest.param("a" * 100, 100, "a" * 100, id="exactly at the limit unchanged"),
    ],
)
def test_text_within_the_limit_is_kept_whole(text: str, limit: int, expected: str) -> None:
    assert bounded(text, limit) == expected


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(FIRST, FIRST_STAMP, id="UTC with milliseconds"),
        pytest.param(
            datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
            "2024-05-01T12:00:00.000+00:00",
            id="other zone converted to UTC",
        ),
    ],
)
def test_timestamps_are_iso_8601_utc_with_milliseconds(moment: datetime, expected: str) -> None:
    assert utc_timestamp(moment) == expected


def test_a_timestamp_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    stamp = datetime.fromisoformat(utc_timestamp())
    assert stamp.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)


MISSING = object()

COUNTS = [
    pytest.param(None, 0, id="no headers"),
    pytest.param(MISSING, 0, id="header missing"),
    pytest.param(3, 3, id="int"),
    pytest.param("4", 4, id="numeric string"),
    pytest.param(b"2", 2, id="bytes"),
    pytest.param(2.7, 2, id="float"),
    pytest.param(True, 1, id="bool"),
    pytest.param(-2, 0, id="negative"),
    pytest.param({"v": None}, 0, id="None value"),
    pytest.param("abc", 0, id="junk string"),
    pytest.param("", 0, id="empty string"),
    pytest.param([1], 0, id="list"),
    pytest.param({"v": {"n": 1}}, 0, id="dict"),
    pytest.param(float("nan"), 0, id="nan"),
    pytest.param(float("inf"), 0, id="infinity"),
    pytest.param(datetime(2024, 1, 1), 0, id="datetime"),
]


def headers_with(name: str, value: Any) -> dict[str, Any] | None:
    """Headers holding ``value`` under ``name`` (``None``: no headers; ``MISSING``: no such header)."""
    if value is None:
        return None
    if value is MISSING:
        return {"other": 1}
    if isinstance(value, dict):
        return {name: value["v"]}
    return {name: value}


@pytest.mark.parametrize(("value", "expected"), COUNTS)
def test_retry_count_parses_junk_safely(value: Any, expected: int) -> None:
    assert retry_count(headers_with("x-retry-count", value)) == expected


@pytest.mark.parametrize(("value", "expected"), COUNTS)
def test_delivery_count_parses_junk_safely(value: Any, expected: int) -> None:
    assert delivery_count(headers_with("x-delivery-count", value)) == expected


def test_the_frame_reader_writes_the_header_the_receipt_check_reads() -> None:
    """workers.frames (the lowest layer) names x-undecodable-properties itself; it must be headers' name."""
    from workers import frames

    assert frames.UNDECODABLE_PROPERTIES == h.UNDECODABLE_PROPERTIES == "x-undecodable-properties"
