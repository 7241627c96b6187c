"""Delayed tasks' arithmetic: units, routing keys through the levels, refusals (pure)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from config.topology import (
    DELAY_LEVELS,
    DELAY_RESOLUTION_MS,
    delay_binding_key,
    delay_level,
    delay_level_arguments,
    delay_level_bindings,
)
from workers.delivery.delays import (
    MAX_DELAY_SECONDS,
    DelayError,
    check_countdown,
    check_eta,
    delay_route,
    delay_routing_key,
    delay_units,
    levels_waited,
)
from workers.delivery.headers import DELAY_DUE_AT
from workers.delivery.lateness import BUCKETS, LatenessHistogram, LatenessRecorder, read_lateness
from workers.delivery.publishing import delayed_destination
from workers.ops.metrics import lateness_samples, render

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def topic_matches(pattern: str, key: str) -> bool:
    """RabbitMQ's topic matching for the patterns used here (``*`` one word, ``#`` any)."""
    regex = "^" + re.escape(pattern).replace(r"\*", r"[^.]+").replace(r"\.\#", r"(\..*)?") + "$"
    return re.match(regex, key) is not None


def route_through_levels(entry: str, key: str) -> list[int]:
    """The levels whose queue ``key`` waits in, from the ``entry`` exchange down, as RabbitMQ routes it."""
    waited = []
    for level in range(int(entry.rsplit(".", 1)[1]), -1, -1):
        to_queue, onward = delay_level_bindings(level)
        assert topic_matches(to_queue, key) != topic_matches(onward, key), "exactly one path per level"
        if topic_matches(to_queue, key):
            waited.append(level)
    return waited


@pytest.mark.parametrize(
    ("seconds", "units"),
    [
        pytest.param(0, 0, id="zero"),
        pytest.param(-3, 0, id="past"),
        pytest.param(0.001, 1, id="under one unit rounds up"),
        pytest.param(0.01, 1, id="one unit"),
        pytest.param(0.011, 2, id="just over one unit"),
        pytest.param(1.5, 150, id="1.5 s"),
        pytest.param(3600, 360_000, id="one hour"),
    ],
)
def test_a_delay_is_counted_in_units_rounded_up_so_nothing_runs_early(seconds: float, units: int) -> None:
    assert delay_units(seconds) == units
    assert units * DELAY_RESOLUTION_MS / 1000 >= seconds


@pytest.mark.parametrize("units", [1, 2, 3, 150, 1024, 360_000, 2**DELAY_LEVELS - 1])
def test_a_routing_key_waits_exactly_its_delay_across_the_levels(units: int) -> None:
    """Given a delay in units, it enters at its highest set bit's level, and the
    level exchanges send it into exactly the levels of its set bits, whose waits
    add up to the delay."""
    entry, key = delay_route(units, "email.events")
    assert entry == delay_level(units.bit_length() - 1)
    waited = route_through_levels(entry, key)
    assert waited == levels_waited(units)
    assert (
        sum(delay_level_arguments(level)["x-message-ttl"] for level in waited) == units * DELAY_RESOLUTION_MS
    )
    assert topic_matches(delay_binding_key("email.events"), key)
    assert not topic_matches(delay_binding_key("email"), key)


def test_the_longest_delay_is_about_31_days_and_one_unit_more_is_refused() -> None:
    assert MAX_DELAY_SECONDS == pytest.approx((2**28 - 1) / 100)
    assert 30 * 86400 < MAX_DELAY_SECONDS < 32 * 86400
    with pytest.raises(DelayError, match="does not fit"):
        delay_routing_key(2**DELAY_LEVELS, "orders")


@pytest.mark.parametrize(
    ("countdown", "problem"),
    [
        pytest.param(-1, "finite number of seconds >= 0", id="negative"),
        pytest.param(math.nan, "finite number", id="nan"),
        pytest.param(math.inf, "finite number", id="infinite"),
        pytest.param(MAX_DELAY_SECONDS + 1, "longer than the longest delay", id="too long"),
        pytest.param("5", "must be a number", id="text"),
        pytest.param(True, "must be a number", id="a bool"),
    ],
)
def test_a_countdown_the_broker_cannot_hold_is_refused_with_a_reason(countdown: object, problem: str) -> None:
    with pytest.raises(DelayError, match=problem):
        check_countdown(countdown)


@pytest.mark.parametrize(
    ("eta", "problem"),
    [
        pytest.param(datetime(2026, 12, 1, 13, 0), "no timezone", id="naive datetime"),
        pytest.param("2026-12-01T13:00:00", "no timezone", id="naive text"),
        pytest.param("tomorrow", "ISO 8601", id="not a time"),
        pytest.param(NOW + timedelta(days=40), "further ahead", id="too far"),
        pytest.param(12345, "must be a datetime", id="a number"),
    ],
)
def test_an_eta_the_broker_cannot_hold_is_refused_with_a_reason(eta: object, problem: str) -> None:
    with pytest.raises(DelayError, match=problem):
        check_eta(eta, NOW)


def test_an_eta_in_the_past_is_allowed_and_due_now() -> None:
    headers = {"eta": (NOW - timedelta(minutes=1)).isoformat()}
    assert delayed_destination(headers, "orders", NOW) is None
    assert headers["eta"] is None
    assert DELAY_DUE_AT not in headers


def test_a_future_eta_is_cleared_and_sent_into_the_levels_with_its_due_time() -> None:
    """Given an eta 1.5 s ahead, the message enters the highest level with the
    delay's bits and the target queue in its key, no eta header (no worker may
    hold it) and its due time in x-delay-due-at."""
    due = NOW + timedelta(seconds=1.5)
    headers = {"eta": due.isoformat()}
    exchange, key = delayed_destination(headers, "orders", NOW)
    assert exchange == "platform.delay.7"  # 150 units: 0b10010110, highest bit 7
    assert key == delay_routing_key(150, "orders")
    assert headers["eta"] is None
    assert headers[DELAY_DUE_AT] == "2026-12-01T12:00:01.500+00:00"


@pytest.mark.parametrize(
    ("observed", "at_or_under_100ms", "total"),
    [
        pytest.param([], 0, 0, id="nothing observed"),
        pytest.param([0.02, 0.05, 0.2], 2, 3, id="two of three within 100 ms"),
        pytest.param([-0.5, 0.0], 2, 2, id="early counts as on time"),
        pytest.param([120.0], 0, 1, id="beyond the last bound: only +Inf"),
    ],
)
def test_lateness_is_counted_in_cumulative_buckets(
    observed: list[float], at_or_under_100ms: int, total: int
) -> None:
    """Given arrivals so late after their due time, the histogram's bucket for
    0.1 s counts those at or under it, +Inf counts all, and the sum adds them up."""
    histogram = LatenessHistogram()
    for seconds in observed:
        histogram.observe(seconds)
    assert histogram.counts[BUCKETS.index(0.1)] == at_or_under_100ms
    assert histogram.counts[-1] == histogram.observations == total
    assert histogram.total == pytest.approx(sum(max(s, 0.0) for s in observed))
    assert histogram.counts == sorted(histogram.counts)


def test_the_lateness_of_several_workers_adds_up_in_the_state_store(tmp_path) -> None:
    """Given two workers' recorders flushing to one SQLite store, reading it gives
    the sum; flushing again without news writes nothing new."""
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    first, second = LatenessRecorder(url, "w1@host"), LatenessRecorder(url, "w2@host")
    for seconds in (0.02, 0.3):
        first.observe(seconds)
    second.observe(7.0)
    first.flush()
    second.flush()
    second.flush()
    summed = read_lateness(url)
    assert summed.observations == 3
    assert summed.total == pytest.approx(7.32)
    assert summed.counts[BUCKETS.index(0.5)] == 2


def test_the_metrics_render_the_lateness_histogram_in_prometheus_form() -> None:
    histogram = LatenessHistogram()
    histogram.observe(0.04)
    text = render(lateness_samples(histogram))
    assert "# TYPE platform_delay_lateness_seconds histogram" in text
    assert 'platform_delay_lateness_seconds_bucket{le="0.025"} 0' in text
    assert 'platform_delay_lateness_seconds_bucket{le="0.05"} 1' in text
    assert 'platform_delay_lateness_seconds_bucket{le="+Inf"} 1' in text
    assert "platform_delay_lateness_seconds_count 1" in text
