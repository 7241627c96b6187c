"""The order saga's definition and the pure decision, as tables (no I/O)."""

from __future__ import annotations

import pytest

from tasks.saga.definition import order_saga
from workers.sagas.definition import (
    COMPENSATION_FAILED,
    RESOLVED,
    Act,
    Late,
    Move,
    SagaDefinition,
    SagaDefinitionError,
    deadline_fires,
    decide,
    failed_compensation,
)

SAGA = order_saga(step_deadline=5.0)

#: (state, event type, decision): every fact of the order saga in every state that matters.
DECISIONS = [
    ("payment_pending", "order.created", Act()),
    ("payment_pending", "payment.succeeded", Move("stock_pending")),
    ("payment_pending", "payment.failed", Move("cancelled")),
    ("stock_pending", "inventory.reserved", Move("confirmed")),
    ("stock_pending", "inventory.failed", Move("refunding")),
    ("refunding", "payment.refunded", Move("cancelled")),
    ("timed_out", "payment.refunded", Move("cancelled")),
    ("timed_out", "order.expired", Act()),
    ("cancelled", "order.expired", Act()),
    (COMPENSATION_FAILED, "order.expired", Act()),
    (RESOLVED, "order.expired", Act()),
    # Late: the saga has gone past the state that expected the fact.
    ("timed_out", "order.created", Late("timed_out")),
    ("timed_out", "payment.succeeded", Late("timed_out")),
    ("timed_out", "inventory.reserved", Late("timed_out")),
    ("timed_out", "inventory.failed", Late("timed_out")),
    ("cancelled", "payment.succeeded", Late("cancelled")),
    ("confirmed", "inventory.reserved", Late("confirmed")),
    ("confirmed", "payment.refunded", Late("confirmed")),
    ("stock_pending", "payment.succeeded", Late("stock_pending")),
    ("cancelled", "payment.refunded", Late("cancelled")),
    ("refunding", "inventory.failed", Late("refunding")),
    ("payment_pending", "order.expired", Late("payment_pending")),
]


@pytest.mark.parametrize(
    ("state", "event", "expected"), DECISIONS, ids=[f"{s} + {e}" for s, e, _ in DECISIONS]
)
def test_each_fact_in_each_state_moves_acts_or_is_late(state: str, event: str, expected: object) -> None:
    """Given the order saga in a state, when a fact arrives, then the table says what it does."""
    assert decide(SAGA, state, event) == expected


def test_an_event_type_the_saga_does_not_know_is_a_wiring_error() -> None:
    with pytest.raises(SagaDefinitionError, match="does not react to 'order.shipped'"):
        decide(SAGA, "payment_pending", "order.shipped")


DEADLINES = [
    ("payment_pending", "payment_pending", Move("timed_out")),
    ("stock_pending", "stock_pending", Move("timed_out")),
    ("stock_pending", "payment_pending", None),  # the payment step answered in time
    ("confirmed", "stock_pending", None),
    ("cancelled", None, None),
    ("timed_out", None, None),
    ("refunding", None, Move("timed_out")),  # the whole saga's deadline
    ("stock_pending", None, Move("timed_out")),
    (COMPENSATION_FAILED, None, None),
]


@pytest.mark.parametrize(("state", "expected_state", "result"), DEADLINES)
def test_a_deadline_fires_only_while_the_saga_waits_where_it_was_set(
    state: str, expected_state: str | None, result: object
) -> None:
    """Given a deadline set for a state (None: the whole saga), it times the saga out only
    if the saga is still there (or, for the whole saga, still running)."""
    assert deadline_fires(SAGA, state, expected_state) == result


@pytest.mark.parametrize(
    ("state", "result"),
    [
        ("refunding", Move(COMPENSATION_FAILED)),
        ("timed_out", Move(COMPENSATION_FAILED)),
        ("stock_pending", Move(COMPENSATION_FAILED)),
        ("cancelled", None),
        ("confirmed", None),
        (COMPENSATION_FAILED, None),
        (RESOLVED, None),
    ],
)
def test_a_dead_lettered_compensation_fails_a_running_saga_only(state: str, result: object) -> None:
    assert failed_compensation(SAGA, state) == result


def test_the_order_saga_declares_its_deadlines_and_compensations() -> None:
    assert SAGA.deadline_of("payment_pending") == 5.0
    assert SAGA.deadline_of("stock_pending") == 5.0
    assert SAGA.deadline_of("refunding") is None
    assert SAGA.saga_deadline == 15.0
    assert SAGA.compensations == {"refunding": "inventory.failed", "timed_out": "order.expired"}
    assert SAGA.is_terminal("confirmed") and SAGA.is_terminal(COMPENSATION_FAILED)
    assert not SAGA.is_terminal("timed_out")


BAD = [
    pytest.param(
        {"moves": {("done", "x.happened"): "a"}}, "terminal state 'done' cannot move", id="terminal moves"
    ),
    pytest.param({"step_deadlines": {"a": 0}}, "deadline of 'a' must be positive", id="zero deadline"),
    pytest.param(
        {"step_deadlines": {"done": 3}},
        "terminal state 'done' cannot have a deadline",
        id="terminal deadline",
    ),
    pytest.param({"initial": "done"}, "initial state 'done' is terminal", id="terminal start"),
    pytest.param(
        {"acts": frozenset({("a", "x.happened")})},
        "'x.happened' in 'a' both moves and acts",
        id="move and act",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_a_definition_that_contradicts_itself_is_refused_when_declared(change: dict, message: str) -> None:
    """Given a definition with a contradiction, declaring it raises and names the problem."""
    fields = {
        "name": "t",
        "initial": "a",
        "moves": {("a", "x.happened"): "done"},
        "terminal": frozenset({"done"}),
        "timeout_state": "late",
        "deadline_task": "t.deadline",
        "deadline_queue": "orders",
    }
    with pytest.raises(SagaDefinitionError, match=message):
        SagaDefinition(**{**fields, **change})
