"""decide(): retry later through a delay queue, or dead-letter now."""

from __future__ import annotations

import json
import pickle

import pytest
from celery.exceptions import Retry

from workers.delivery.backoff import RetryPolicy
from workers.delivery.classify import Classification, ErrorClass
from workers.delivery.headers import Failure
from workers.delivery.verdict import DeadLetterNow, RetryLater, decide, describe
from workers.errors import TransientError

DEFAULTS = RetryPolicy()
FAILURE = Failure(
    "transient", "TimeoutError", "read timed out", "Traceback ...\nTimeoutError: read timed out\n"
)


def classified(error_class: ErrorClass, retry_after: float | None = None) -> Classification:
    return Classification(error_class, retry_after)


@pytest.mark.parametrize(
    ("error_class", "retries_done", "retries_left"),
    [
        *[pytest.param(ErrorClass.TRANSIENT, n, n < 5, id=f"transient after {n} retries") for n in range(8)],
        *[pytest.param(ErrorClass.UNKNOWN, n, n < 2, id=f"unknown after {n} retries") for n in range(4)],
        *[pytest.param(ErrorClass.PERMANENT, n, False, id=f"permanent after {n} retries") for n in range(2)],
        pytest.param(ErrorClass.POISON, 0, False, id="poison"),
    ],
)
def test_failures_are_retried_while_their_class_allows_then_dead_lettered(
    error_class: ErrorClass, retries_done: int, retries_left: bool
) -> None:
    verdict = decide(FAILURE, classified(error_class), retries_done, DEFAULTS)
    if retries_left:
        assert isinstance(verdict, RetryLater)
        assert verdict.retry_number == retries_done + 1
        assert verdict.failure == FAILURE
    else:
        assert isinstance(verdict, DeadLetterNow)
        assert verdict.retries == retries_done
        assert verdict.failure == FAILURE


def test_a_permanent_failure_is_dead_lettered_with_zero_retries() -> None:
    verdict = decide(FAILURE, classified(ErrorClass.PERMANENT), 0, DEFAULTS)
    assert isinstance(verdict, DeadLetterNow)
    assert verdict.retries == 0


@pytest.mark.parametrize(
    ("policy", "error_class", "retries_done", "expected"),
    [
        pytest.param(
            RetryPolicy(max_retries=0), ErrorClass.TRANSIENT, 0, DeadLetterNow, id="no transient retries"
        ),
        pytest.param(RetryPolicy(max_retries=8), ErrorClass.TRANSIENT, 7, RetryLater, id="eight retries"),
        pytest.param(
            RetryPolicy(max_unknown_retries=0), ErrorClass.UNKNOWN, 0, DeadLetterNow, id="no unknown retries"
        ),
    ],
)
def test_the_policy_sets_the_number_of_retries(
    policy: RetryPolicy, error_class: ErrorClass, retries_done: int, expected: type
) -> None:
    assert isinstance(decide(FAILURE, classified(error_class), retries_done, policy), expected)


@pytest.mark.parametrize("retries_done", [pytest.param(n, id=f"retry {n + 1}") for n in range(5)])
def test_a_retry_waits_the_backoff_delay(retries_done: int) -> None:
    verdict = decide(FAILURE, classified(ErrorClass.TRANSIENT), retries_done, DEFAULTS)
    assert isinstance(verdict, RetryLater)
    exponential = 2.0**retries_done
    assert exponential <= verdict.delay <= exponential + DEFAULTS.jitter_max


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param(30.0, 30.0, id="Retry-After above backoff"),
        pytest.param(500.0, 60.0, id="Retry-After capped"),
    ],
)
def test_a_retry_honours_retry_after(retry_after: float, expected: float) -> None:
    verdict = decide(FAILURE, classified(ErrorClass.TRANSIENT, retry_after), 0, DEFAULTS)
    assert isinstance(verdict, RetryLater)
    assert verdict.delay == expected


@pytest.mark.parametrize(
    ("countdown", "retry_after", "policy", "expected"),
    [
        pytest.param(3.0, None, DEFAULTS, 3.0, id="countdown replaces backoff"),
        pytest.param(0.0, None, DEFAULTS, 0.0, id="zero countdown"),
        pytest.param(-5.0, None, DEFAULTS, 0.0, id="negative countdown becomes 0"),
        pytest.param(1000.0, None, DEFAULTS, 1000.0, id="countdown above max_delay is honoured"),
        pytest.param(
            30.0, None, RetryPolicy(max_delay=10.0), 30.0, id="countdown above a custom cap is honoured"
        ),
        pytest.param(2.0, 50.0, DEFAULTS, 2.0, id="countdown replaces Retry-After too"),
    ],
)
def test_an_explicit_countdown_replaces_backoff_and_waits_in_the_delay_levels(
    countdown: float, retry_after: float | None, policy: RetryPolicy, expected: float
) -> None:
    """The task's own wait is honoured as given (the broker's delay levels hold it,
    so it is not capped by the backoff's max_delay) and marked as scheduled."""
    verdict = decide(FAILURE, classified(ErrorClass.TRANSIENT, retry_after), 3, policy, countdown=countdown)
    assert isinstance(verdict, RetryLater)
    assert verdict.delay == expected
    assert verdict.scheduled


def test_a_countdown_does_not_extend_exhausted_retries() -> None:
    verdict = decide(FAILURE, classified(ErrorClass.TRANSIENT), 5, DEFAULTS, countdown=1.0)
    assert isinstance(verdict, DeadLetterNow)
    assert verdict.retries == 5


def round_trip(exc: BaseException) -> BaseException:
    return pickle.loads(pickle.dumps(exc))


def test_retry_later_survives_a_pickle_round_trip_with_all_fields() -> None:
    original = RetryLater(FAILURE, 1.25, 3)
    copy = round_trip(original)
    assert type(copy) is RetryLater
    assert isinstance(copy, Retry)
    assert (copy.failure, copy.delay, copy.retry_number) == (FAILURE, 1.25, 3)
    assert copy.when == original.when == 1.25
    assert str(copy) == str(original)
    assert "retry 3 in 1.250s" in str(copy)


def test_dead_letter_survives_a_pickle_round_trip_with_all_fields() -> None:
    original = DeadLetterNow(FAILURE, 5)
    copy = round_trip(original)
    assert type(copy) is DeadLetterNow
    assert (copy.failure, copy.retries) == (FAILURE, 5)
    assert str(copy) == str(original)
    assert "after 5 retries" in str(copy)


class OrderRejected(Exception):
    """An exception defined outside builtins."""


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - we want the raised object back
        return caught


@pytest.mark.parametrize(
    ("exc", "error_class", "error_type", "message"),
    [
        pytest.param(ValueError("bad total"), "permanent", "ValueError", "bad total", id="builtin"),
        pytest.param(KeyError("sku"), ErrorClass.UNKNOWN, "KeyError", "'sku'", id="builtin KeyError"),
        pytest.param(
            json.JSONDecodeError("Expecting value", "x", 0),
            "permanent",
            "json.decoder.JSONDecodeError",
            "Expecting value: line 1 column 1 (char 0)",
            id="stdlib module",
        ),
        pytest.param(
            TransientError("slow"),
            "transient",
            "workers.errors.TransientError",
            "slow",
            id="platform error",
        ),
        pytest.param(
            OrderRejected("no stock"),
            "permanent",
            f"{__name__}.OrderRejected",
            "no stock",
            id="module-level class",
        ),
    ],
)
def test_describe_names_the_type_without_builtins_and_keeps_the_traceback(
    exc: BaseException, error_class: ErrorClass | str, error_type: str, message: str
) -> None:
    failure = describe(raised(exc), error_class)
    assert failure.error_class == str(ErrorClass(error_class))
    assert failure.error_type == error_type
    assert not failure.error_type.startswith("builtins.")
    assert failure.error_message == message
    assert failure.traceback.startswith("Traceback (most recent call last):")
    assert "in raised" in failure.traceback
    assert failure.traceback.rstrip().endswith(f"{type(exc).__name__}: {message}")


def test_describe_rejects_an_unknown_error_class() -> None:
    with pytest.raises(ValueError):
        describe(ValueError("x"), "catastrophic")
