"""How a dead letter is labelled: worker-made or broker-made, its error class, type and time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from workers.ops.dlq.letters import DeadLetterMessage, broker_death_reason, dead_lettered_at, group_id

DEATH_TIME = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)


def death(reason: str, queue: str = "orders", at: datetime = DEATH_TIME) -> dict[str, Any]:
    """One ``x-death`` entry as py-amqp decodes it."""
    return {"reason": reason, "queue": queue, "time": at, "count": 1, "exchange": ""}


def letter(**headers: Any) -> DeadLetterMessage:
    return DeadLetterMessage(0, b"{}", {}, headers)


@pytest.mark.parametrize(
    ("reason", "error_class"),
    [
        ("delivery_limit", "poison"),
        ("expired", "expired"),
        ("maxlen", "overflow"),
        ("rejected", "rejected"),
        ("something-new", "poison"),
    ],
)
def test_a_letter_the_broker_dead_lettered_is_labelled_from_the_latest_x_death_reason(
    reason: str, error_class: str
):
    """Given a letter without x-error-class whose latest x-death says ``reason``,
    when it is labelled, then its class comes from the reason and its type is
    ``x-death:<reason>`` (an unknown reason counts as poison, as before)."""
    dead = letter(**{"x-death": [death(reason), death("expired", at=datetime(2026, 1, 1, tzinfo=UTC))]})
    assert (dead.error_class, dead.error_type) == (error_class, f"x-death:{reason}")
    assert dead.group == group_id("", f"x-death:{reason}")


@pytest.mark.parametrize(
    ("reason", "error_class"),
    [("delivery_limit", "poison"), ("expired", "expired"), ("maxlen", "overflow"), ("rejected", "rejected")],
)
def test_a_platform_copy_of_a_broker_dead_letter_is_labelled_from_x_broker_death_reason(
    reason: str, error_class: str
):
    """Given a letter with no x-death but ``x-broker-death-reason`` (a copy the
    platform made after a broker dead-lettering), when it is labelled, then it
    gets the same class and type as if it still carried the x-death."""
    dead = letter(**{"x-broker-death-reason": reason, "x-broker-death-queue": "orders"})
    assert (dead.error_class, dead.error_type) == (error_class, f"x-death:{reason}")


@pytest.mark.parametrize(
    ("headers", "error_class", "error_type"),
    [
        (
            {"x-error-class": "transient", "x-error-type": "TimeoutError", "x-death": [death("expired")]},
            "transient",
            "TimeoutError",
        ),
        (
            {"x-death": [death("maxlen")], "x-broker-death-reason": "delivery_limit"},
            "overflow",
            "x-death:maxlen",
        ),
        ({"x-death": [{"queue": "orders"}]}, "poison", "x-death:?"),
        ({"x-death": "not a list", "x-broker-death-reason": ""}, "", ""),
        ({}, "", ""),
    ],
    ids=[
        "the platform's own headers win",
        "RabbitMQ's x-death is newer than x-broker-death-reason",
        "an x-death without a reason",
        "a malformed x-death and an empty reason",
        "no failure headers at all",
    ],
)
def test_the_labels_prefer_the_platforms_headers_then_x_death_then_x_broker_death_reason(
    headers: dict[str, Any], error_class: str, error_type: str
):
    """Given the headers of each row, when the letter is labelled, then its class and type are the row's."""
    dead = letter(**headers)
    assert (dead.error_class, dead.error_type) == (error_class, error_type)


def test_without_any_broker_dead_lettering_there_is_no_broker_reason():
    """Given a letter a worker dead-lettered, when asked for the broker's reason, then there is none."""
    assert broker_death_reason({"x-error-class": "permanent"}) is None
    assert broker_death_reason({"x-broker-death-reason": "expired"}) == "expired"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-last-failed-at": "2026-11-05T10:00:00.000+00:00"}, datetime(2026, 11, 5, 10, tzinfo=UTC)),
        (
            {"x-death": [death("expired", at=datetime(2026, 11, 5, 11, 0))]},
            datetime(2026, 11, 5, 11, tzinfo=UTC),
        ),
        ({"x-broker-death-at": "2026-11-05T09:30:00.000+00:00"}, datetime(2026, 11, 5, 9, 30, tzinfo=UTC)),
        (
            {
                "x-last-failed-at": "2026-11-05T10:00:00+00:00",
                "x-death": [death("rejected", at=datetime(2026, 11, 5, 11, 0, tzinfo=UTC))],
                "x-broker-death-at": "2026-11-05T11:30:00+00:00",
            },
            datetime(2026, 11, 5, 11, 30, tzinfo=UTC),
        ),
        ({"x-last-failed-at": "yesterday", "x-broker-death-at": 5}, None),
        ({}, None),
    ],
    ids=[
        "x-last-failed-at",
        "a naive x-death time, read as UTC",
        "x-broker-death-at",
        "the latest of the three",
        "unreadable times",
        "no time at all",
    ],
)
def test_a_letter_entered_its_dlq_at_the_latest_failure_or_broker_death_time(
    headers: dict[str, Any], expected: datetime | None
):
    """Given the times of each row, when asked when the letter was dead-lettered,
    then the answer is the latest readable one (or None)."""
    assert dead_lettered_at(headers) == expected
    assert letter(**headers).dead_lettered_at == expected
