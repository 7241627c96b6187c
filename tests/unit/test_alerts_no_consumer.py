"""A queue that holds ready messages and has no consumer: the alert's timing and the metric (pure)."""

from __future__ import annotations

import pytest

from workers.broker import QueueDepth
from workers.ops.alerts import NO_CONSUMER, QueueView, Rules, decide, hold_times
from workers.ops.metrics import without_consumer_samples

RULES = Rules(
    inflow_per_hour=10,
    queue_depth=1000,
    repeat_after=3600,
    flower_url="http://flower.example/",
    no_consumer_after=120,
)


def check_at(views: list[QueueView], since: dict[str, float], state: dict, now: float):
    """One alert check: the hold times, then the decision."""
    timed, since = hold_times(views, since, now)
    due, state = decide(timed, state, now, RULES)
    return [alert for alert in due if alert.kind == NO_CONSUMER], since, state


def test_a_queue_without_a_consumer_alerts_once_it_has_been_so_for_the_configured_time():
    """Checks every 60 s: seen at 0 s, still so at 60 s (not yet), at 120 s it alerts, naming
    the queue, its ready messages and what to do; at 180 s it is not repeated."""
    stuck = [QueueView("default", depth=3, consumers=0)]
    since: dict[str, float] = {}
    state: dict = {}
    sent = []
    for now in (0, 60, 120, 180):
        due, since, state = check_at(stuck, since, state, now)
        sent.append((now, [alert.text for alert in due]))
    assert [now for now, texts in sent if texts] == [120]
    [text] = sent[2][1]
    assert "default has 3 ready messages and no consumer (for 120s)" in text
    assert "celery -A config worker -Q default" in text and "http://flower.example/broker" in text


@pytest.mark.parametrize(
    "view",
    [
        pytest.param(QueueView("orders", depth=5, consumers=1), id="a consumer"),
        pytest.param(QueueView("orders", depth=0, consumers=0), id="nothing ready"),
        pytest.param(QueueView("orders", depth=5, consumers=None), id="consumers unknown"),
    ],
)
def test_a_queue_with_a_consumer_nothing_ready_or_unknown_consumers_never_alerts(view: QueueView):
    since: dict[str, float] = {}
    state: dict = {}
    for now in (0, 600, 1200):
        due, since, state = check_at([view], since, state, now)
        assert due == []
    assert since == {}


def test_a_consumer_in_between_starts_the_wait_again():
    """Without a consumer at 0 s, one at 60 s, none again at 120 s: the wait counts from 120 s."""
    alone, served = QueueView("default", 3, consumers=0), QueueView("default", 3, consumers=1)
    since: dict[str, float] = {}
    state: dict = {}
    for now, view in ((0, alone), (60, served), (120, alone), (180, alone)):
        due, since, state = check_at([view], since, state, now)
        assert due == [], now
    due, since, state = check_at([alone], since, state, 240)
    assert [alert.queue for alert in due] == ["default"]


def test_with_no_wait_configured_the_first_check_alerts():
    now_rules = Rules(10, 1000, 3600, "http://f/", no_consumer_after=0)
    timed, _ = hold_times([QueueView("default", 1, consumers=0)], {}, 5.0)
    due, _ = decide(timed, {}, 5.0, now_rules)
    assert [(alert.kind, alert.queue, alert.count) for alert in due] == [(NO_CONSUMER, "default", 1)]


def test_the_metric_is_one_exactly_for_ready_messages_without_a_consumer():
    depths = [
        QueueDepth("orders", messages=4, consumers=0),
        QueueDepth("payments", messages=4, consumers=2),
        QueueDepth("default", messages=0, consumers=0),
    ]
    samples = without_consumer_samples(depths)
    assert {sample.labels["queue"]: sample.value for sample in samples} == {
        "orders": 1,
        "payments": 0,
        "default": 0,
    }
    assert {sample.name for sample in samples} == {"platform_queue_without_consumer"}
