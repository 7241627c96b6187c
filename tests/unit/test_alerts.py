"""The pure alert decision: what fires, what repeats, what is forgotten."""

from __future__ import annotations

from workers.ops.alerts import DLQ_INFLOW, DLQ_NOT_EMPTY, QUEUE_DEPTH, Alert, QueueView, Rules, check, decide
from workers.ops.dlq import ErrorGroup

RULES = Rules(inflow_per_hour=10, queue_depth=1000, repeat_after=3600, flower_url="http://flower.example/")
GROUP = ErrorGroup(
    "7daae773", "tests.permanent", "PermanentError", "permanent", 3, "order 42 is invalid", None, None
)


def keys(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [alert.key for alert in alerts]


def test_a_dlq_going_from_empty_to_non_empty_alerts_once_with_queue_count_group_and_link():
    """The first check that sees dead letters alerts; the next ones within the hour do not."""
    empty = [QueueView("orders", depth=0)]
    full = [QueueView("orders", depth=0, dead_letters=3, inflow_last_hour=3, top_group=GROUP)]
    due, state = decide(empty, {}, 0, RULES)
    assert due == [] and state == {}
    due, state = decide(full, state, 60, RULES)
    assert keys(due) == [(DLQ_NOT_EMPTY, "orders")]
    text = due[0].text
    assert "orders.dlq" in text and "3 dead letters" in text
    assert "tests.permanent · PermanentError" in text and "order 42 is invalid" in text
    assert "http://flower.example/dlq/orders" in text
    for minute in range(2, 60):
        due, state = decide(full, state, minute * 60, RULES)
        assert due == [], f"repeated at minute {minute}"


def test_a_condition_that_still_holds_is_repeated_after_repeat_after():
    """After repeat_after seconds the same condition is sent again, once."""
    full = [QueueView("orders", depth=0, dead_letters=1)]
    _, state = decide(full, {}, 0, RULES)
    due, state = decide(full, state, 3599, RULES)
    assert due == []
    due, state = decide(full, state, 3600, RULES)
    assert keys(due) == [(DLQ_NOT_EMPTY, "orders")]


def test_a_condition_that_clears_alerts_again_at_once_when_it_comes_back():
    """Emptying the DLQ forgets the condition; the next dead letter alerts again."""
    full, empty = [QueueView("orders", 0, dead_letters=1)], [QueueView("orders", 0)]
    _, state = decide(full, {}, 0, RULES)
    _, state = decide(empty, state, 60, RULES)
    due, _ = decide(full, state, 120, RULES)
    assert keys(due) == [(DLQ_NOT_EMPTY, "orders")]


def test_inflow_and_depth_alert_only_above_their_thresholds():
    """Inflow of 10 and depth of 1,000 are fine; 11 and 1,001 alert, per queue."""
    at_limit = [QueueView("orders", depth=1000, dead_letters=10, inflow_last_hour=10)]
    above = [QueueView("orders", depth=1001, dead_letters=11, inflow_last_hour=11), QueueView("payments", 5)]
    due, _ = decide(at_limit, {(DLQ_NOT_EMPTY, "orders"): 0}, 1, RULES)
    assert due == []
    due, _ = decide(above, {(DLQ_NOT_EMPTY, "orders"): 0}, 2, RULES)
    assert keys(due) == [(DLQ_INFLOW, "orders"), (QUEUE_DEPTH, "orders")]
    assert "11 dead letters entered orders.dlq in the last hour (more than 10)" in due[0].text
    assert "orders holds 1001 ready messages" in due[1].text


def test_an_alert_that_could_not_be_sent_is_tried_again_at_the_next_check():
    """A webhook failure leaves the condition due; once sent, it is quiet."""
    full = [QueueView("orders", 0, dead_letters=1)]
    sent: list[Alert] = []

    def failing(alert: Alert) -> None:
        raise OSError("webhook down")

    state = check(full, {}, 0, RULES, failing)
    assert state == {}
    state = check(full, state, 60, RULES, sent.append)
    state = check(full, state, 120, RULES, sent.append)
    assert keys(sent) == [(DLQ_NOT_EMPTY, "orders")]
    assert sent[0].payload() == {"text": sent[0].text}
