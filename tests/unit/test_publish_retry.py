"""Which failed publishes a task publishes again within its timeout, and after what pause (pure)."""

from __future__ import annotations

from itertools import islice

import pytest
from amqp.exceptions import (
    AccessRefused,
    ConnectionForced,
    MessageNacked,
    NotFound,
    RecoverableConnectionError,
)
from kombu.exceptions import OperationalError

from workers.delivery.publish_retry import pauses, reason, retryable


def wrapped(cause: BaseException) -> OperationalError:
    """What kombu raises: an OperationalError raised from the transport's error."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise OperationalError(str(inner)) from inner
    except OperationalError as outer:
        return outer


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (MessageNacked(), True),  # a quorum queue without a leader yet
        (ConnectionResetError(104, "Connection reset by peer"), True),  # the node died
        (ConnectionRefusedError(111, "Connection refused"), True),  # the next node is down too
        (TimeoutError("timed out"), True),  # no confirm in time (a frozen node)
        (RecoverableConnectionError("Server unexpectedly closed connection"), True),
        (ConnectionForced("broker forced connection closure"), True),  # a node stopping
        (NotFound("NOT_FOUND - no exchange 'x'"), False),  # wrong for every try
        (AccessRefused("ACCESS_REFUSED"), False),
        (ValueError("not a broker problem"), False),
    ],
)
def test_a_nack_or_a_lost_node_is_tried_again_but_a_wrong_route_is_not(cause, expected) -> None:
    """Given a publish that failed with ``cause`` (as kombu raises it),
    when the task decides whether to publish again, then it does for a nack or a lost node only."""
    assert retryable(wrapped(cause)) is expected


def test_pauses_double_from_a_tenth_of_a_second_up_to_one() -> None:
    assert list(islice(pauses(), 6)) == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_the_reason_is_the_innermost_cause_when_kombu_says_nothing() -> None:
    assert reason(wrapped(MessageNacked())) == "MessageNacked"
    assert reason(OperationalError("timed out")) == "timed out"
