"""The backoff schedule: delay(n) = min(base * 2**n + uniform(0, jitter_max), max_delay)."""

from __future__ import annotations

import random

import pytest

from workers.delivery.backoff import RetryPolicy, backoff_delay
from workers.delivery.classify import ErrorClass

DEFAULTS = RetryPolicy()


def low(a: float, b: float) -> float:
    """Jitter pinned to its low end."""
    return a


def high(a: float, b: float) -> float:
    """Jitter pinned to its high end."""
    return b


def bounds(attempt: int, policy: RetryPolicy = DEFAULTS) -> tuple[float, float]:
    exponential = policy.base * 2**attempt
    return min(exponential, policy.max_delay), min(exponential + policy.jitter_max, policy.max_delay)


ATTEMPTS = [pytest.param(n, id=f"attempt {n}") for n in range(7)]


def test_the_defaults_are_the_design_defaults() -> None:
    assert (DEFAULTS.base, DEFAULTS.jitter_max, DEFAULTS.max_delay) == (1.0, 0.5, 60.0)
    assert (DEFAULTS.max_retries, DEFAULTS.max_unknown_retries) == (5, 2)


@pytest.mark.parametrize(
    ("attempt", "at_low_end", "at_high_end"),
    [
        pytest.param(0, 1.0, 1.5, id="attempt 0"),
        pytest.param(1, 2.0, 2.5, id="attempt 1"),
        pytest.param(2, 4.0, 4.5, id="attempt 2"),
        pytest.param(3, 8.0, 8.5, id="attempt 3"),
        pytest.param(4, 16.0, 16.5, id="attempt 4"),
        pytest.param(5, 32.0, 32.5, id="attempt 5"),
        pytest.param(6, 60.0, 60.0, id="attempt 6 is capped"),
    ],
)
def test_pinned_jitter_gives_the_ends_of_the_interval(
    attempt: int, at_low_end: float, at_high_end: float
) -> None:
    assert backoff_delay(attempt, DEFAULTS, uniform=low) == at_low_end
    assert backoff_delay(attempt, DEFAULTS, uniform=high) == at_high_end


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_random_jitter_stays_within_the_bounds(attempt: int) -> None:
    lowest, highest = bounds(attempt)
    draw = random.Random(attempt).uniform
    delays = [backoff_delay(attempt, DEFAULTS, uniform=draw) for _ in range(2000)]
    assert all(lowest <= delay <= highest for delay in delays)


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_the_default_jitter_source_stays_within_the_bounds(attempt: int) -> None:
    lowest, highest = bounds(attempt)
    assert all(lowest <= backoff_delay(attempt, DEFAULTS) <= highest for _ in range(500))


def test_jitter_is_drawn_between_zero_and_jitter_max() -> None:
    calls: list[tuple[float, float]] = []

    def spy(a: float, b: float) -> float:
        calls.append((a, b))
        return a

    backoff_delay(2, RetryPolicy(jitter_max=0.75), uniform=spy)
    assert calls == [(0.0, 0.75)]


@pytest.mark.parametrize(
    ("attempt", "policy", "expected"),
    [
        pytest.param(6, DEFAULTS, 60.0, id="defaults cap 64 s at 60"),
        pytest.param(10, DEFAULTS, 60.0, id="attempt 10"),
        pytest.param(1000, DEFAULTS, 60.0, id="absurd attempt does not overflow"),
        pytest.param(3, RetryPolicy(max_delay=5.0), 5.0, id="small cap"),
        pytest.param(0, RetryPolicy(base=0.0, jitter_max=0.0), 0.0, id="zero base and jitter"),
        pytest.param(2, RetryPolicy(base=0.5, max_delay=30.0), 2.5, id="custom base below the cap"),
    ],
)
def test_the_delay_never_exceeds_max_delay(attempt: int, policy: RetryPolicy, expected: float) -> None:
    assert backoff_delay(attempt, policy, uniform=high) == expected


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        pytest.param(0, 10.0, 10.0, id="Retry-After larger than backoff wins"),
        pytest.param(3, 8.25, 8.25, id="Retry-After just above backoff wins"),
        pytest.param(4, 5.0, 16.0, id="backoff larger than Retry-After wins"),
        pytest.param(0, 0.0, 1.0, id="zero Retry-After keeps backoff"),
        pytest.param(0, 120.0, 60.0, id="Retry-After capped by max_delay"),
        pytest.param(2, 60.0, 60.0, id="Retry-After equal to max_delay"),
        pytest.param(0, None, 1.0, id="no Retry-After"),
    ],
)
def test_retry_after_larger_than_backoff_wins_capped_by_max_delay(
    attempt: int, retry_after: float | None, expected: float
) -> None:
    assert backoff_delay(attempt, DEFAULTS, retry_after=retry_after, uniform=low) == expected


@pytest.mark.parametrize("attempt", [pytest.param(-1, id="-1"), pytest.param(-100, id="-100")])
def test_a_negative_attempt_raises(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt must be >= 0"):
        backoff_delay(attempt, DEFAULTS)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"base": -1.0}, id="negative base"),
        pytest.param({"jitter_max": -0.1}, id="negative jitter"),
        pytest.param({"max_delay": 0.0}, id="zero max_delay"),
        pytest.param({"max_delay": -5.0}, id="negative max_delay"),
        pytest.param({"max_retries": -1}, id="negative max_retries"),
        pytest.param({"max_unknown_retries": -1}, id="negative max_unknown_retries"),
    ],
)
def test_an_invalid_retry_policy_raises(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"base": 0.0, "jitter_max": 0.0}, id="no wait at all"),
        pytest.param({"max_retries": 0, "max_unknown_retries": 0}, id="no retries"),
        pytest.param({"max_delay": 0.001}, id="tiny max_delay"),
    ],
)
def test_edge_values_make_a_valid_retry_policy(options: dict[str, float]) -> None:
    RetryPolicy(**options)


@pytest.mark.parametrize(
    ("error_class", "with_defaults", "with_custom"),
    [
        pytest.param(ErrorClass.TRANSIENT, 5, 7, id="transient"),
        pytest.param(ErrorClass.UNKNOWN, 2, 1, id="unknown"),
        pytest.param(ErrorClass.PERMANENT, 0, 0, id="permanent"),
        pytest.param(ErrorClass.POISON, 0, 0, id="poison"),
        pytest.param(ErrorClass.UNDECODABLE, 0, 0, id="undecodable"),
        pytest.param(ErrorClass.DISALLOWED, 0, 0, id="disallowed"),
        pytest.param(ErrorClass.UNKNOWN_TASK, 0, 0, id="unknown-task"),
    ],
)
def test_retries_allowed_depends_on_the_error_class(
    error_class: ErrorClass, with_defaults: int, with_custom: int
) -> None:
    assert DEFAULTS.retries_allowed(error_class) == with_defaults
    custom = RetryPolicy(max_retries=7, max_unknown_retries=1)
    assert custom.retries_allowed(error_class) == with_custom
