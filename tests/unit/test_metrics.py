"""Metrics without a broker: queue classification, samples and the text format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config.topology import Topology
from workers.ops.delays import DelayedTask, DelayStats, level_stats
from workers.ops.dlq import dlq_stats
from workers.ops.metrics import Sample, dead_letter_samples, delay_samples, queue_samples, render
from workers.ops.queue_stats import classify, queue_stats, vhost_of

TOPOLOGY = Topology.build(("orders", "payments"), 2, 3)


@pytest.mark.parametrize(
    ("name", "kind", "work_queue"),
    [
        ("orders", "work", "orders"),
        ("orders.retry.2", "retry", "orders"),
        ("orders.dlq", "dead-letter", "orders"),
        ("billing.order-created", "subscriber", "billing.order-created"),
        ("celery.pidbox", "internal", "celery.pidbox"),
        ("celeryev.0d4f", "internal", "celeryev.0d4f"),
        ("w1@host.celery.pidbox", "internal", "w1@host.celery.pidbox"),
        ("amq.gen-abc", "internal", "amq.gen-abc"),
        ("other.dlq", "dead-letter", "other"),
        ("platform.delay.0", "delay", "platform.delay.0"),
        ("platform.delay.27", "delay", "platform.delay.27"),
        ("platform.delayed.unroutable", "delay", "platform.delayed.unroutable"),
        ("platform.delay.28", "subscriber", "platform.delay.28"),
    ],
)
def test_queues_are_classified_as_work_retry_dead_letter_delay_subscriber_or_internal(name, kind, work_queue):
    """The topology names work, retry and DLQs, and the shared delay levels with their unroutable
    catch-all; Celery's and RabbitMQ's own queues are internal."""
    assert classify(name, TOPOLOGY) == (kind, work_queue)


def test_every_platform_queue_gets_ready_unacked_consumers_and_consumed_ones_a_lag():
    """Internal queues are left out; lag is ready + unacked for work and subscriber queues."""
    raw = [
        {"name": "orders", "messages_ready": 5, "messages_unacknowledged": 2, "consumers": 1},
        {"name": "orders.dlq", "messages_ready": 3, "messages_unacknowledged": 0, "consumers": 0},
        {"name": "celery.pidbox", "messages_ready": 0, "messages_unacknowledged": 0, "consumers": 1},
    ]
    samples = queue_samples(queue_stats(raw, TOPOLOGY))
    values = {(s.name, s.labels["queue"]): s.value for s in samples}
    assert values == {
        ("platform_queue_messages_ready", "orders"): 5,
        ("platform_queue_messages_unacked", "orders"): 2,
        ("platform_queue_consumers", "orders"): 1,
        ("platform_consumer_lag_messages", "orders"): 7,
        ("platform_queue_messages_ready", "orders.dlq"): 3,
        ("platform_queue_messages_unacked", "orders.dlq"): 0,
        ("platform_queue_consumers", "orders.dlq"): 0,
    }


def test_an_empty_dlq_reports_age_zero_and_no_inflow():
    """No dead letters: oldest age 0, inflow 0, labelled with both queue names."""
    samples = dead_letter_samples(dlq_stats("orders", [], datetime.now(UTC)))
    assert [(s.name, s.value, dict(s.labels)) for s in samples] == [
        ("platform_dead_letter_oldest_age_seconds", 0.0, {"queue": "orders.dlq", "work_queue": "orders"}),
        ("platform_dead_letter_inflow_last_hour", 0, {"queue": "orders.dlq", "work_queue": "orders"}),
    ]


def test_the_text_format_has_help_type_escaped_labels_and_numbers():
    """Series are grouped under one HELP and TYPE; label values are escaped."""
    text = render(
        [
            Sample("platform_queue_messages_ready", 3, {"queue": 'a"b', "kind": "work"}),
            Sample("platform_metrics_up", 1),
            Sample("platform_queue_messages_ready", 0.5, {"queue": "c\\d", "kind": "work"}),
        ]
    )
    assert text.splitlines() == [
        "# HELP platform_queue_messages_ready Messages ready for delivery in the queue.",
        "# TYPE platform_queue_messages_ready gauge",
        'platform_queue_messages_ready{kind="work",queue="a\\"b"} 3',
        'platform_queue_messages_ready{kind="work",queue="c\\\\d"} 0.5',
        "# HELP platform_metrics_up 1 when the broker and its management API answered this scrape.",
        "# TYPE platform_metrics_up gauge",
        "platform_metrics_up 1",
    ]


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://g:g@h:5672//", "/"),
        ("amqp://g:g@h:5672/", "/"),
        ("amqp://h/test-1", "test-1"),
        ("amqp://h/a%2Fb", "a/b"),
    ],
)
def test_the_vhost_comes_from_the_broker_urls_path(url: str, vhost: str):
    """Empty path or ``//`` is the default vhost; others are unquoted."""
    assert vhost_of(url) == vhost


def test_a_delay_level_gets_depth_samples_but_no_consumer_lag():
    """Given a delay level holding 40 messages, when sampled, then it has ready, unacked and consumers
    with kind delay, and no lag: no worker consumes it, its depth is nobody's backlog."""
    raw = [{"name": "platform.delay.12", "messages_ready": 40, "messages_unacknowledged": 0, "consumers": 0}]
    samples = queue_samples(queue_stats(raw, TOPOLOGY))
    assert {s.name for s in samples} == {
        "platform_queue_messages_ready",
        "platform_queue_messages_unacked",
        "platform_queue_consumers",
    }
    assert {s.labels["kind"] for s in samples} == {"delay"}


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def waiting(level: int, seconds: float | None) -> DelayedTask:
    due = None if seconds is None else NOW + timedelta(seconds=seconds)
    return DelayedTask(f"t{level}", "tests.ok", "orders", due, level, 0, "")


@pytest.mark.parametrize(
    ("levels", "unroutable", "expected"),
    [
        pytest.param(
            [(12, 2, [waiting(12, 59), waiting(12, None)]), (14, 1, [waiting(14, 300)]), (0, 0, [])],
            0,
            [
                ("platform_delayed_messages", 2, {"level": "12"}),
                ("platform_delayed_messages", 1, {"level": "14"}),
                ("platform_delayed_messages", 0, {"level": "0"}),
                ("platform_delayed_next_due_seconds", 59, {}),
                ("platform_delayed_unroutable_messages", 0, {}),
            ],
            id="levels with messages: per level depth and the soonest due",
        ),
        pytest.param(
            [(3, 0, []), (2, 0, [])],
            5,
            [
                ("platform_delayed_messages", 0, {"level": "3"}),
                ("platform_delayed_messages", 0, {"level": "2"}),
                ("platform_delayed_unroutable_messages", 5, {}),
            ],
            id="nothing waiting: no next due at all",
        ),
        pytest.param(
            [(5, 1, [waiting(5, -2.5)]), (4, None, [])],
            None,
            [
                ("platform_delayed_messages", 1, {"level": "5"}),
                ("platform_delayed_next_due_seconds", -2.5, {}),
            ],
            id="a late one is negative; missing queues give no sample",
        ),
    ],
)
def test_delayed_tasks_are_counted_per_level_with_the_seconds_until_the_next_one_is_due(
    levels, unroutable, expected
):
    """Given the delay levels' depths and the due times browsed in them,
    when sampled, then each existing level has its depth, the soonest due its seconds from now
    (absent when none is known), and the unroutable catch-all its depth (absent when it is missing)."""
    stats = DelayStats(
        tuple(level_stats(level, messages, tasks) for level, messages, tasks in levels), unroutable
    )
    samples = delay_samples(stats, NOW)
    assert sorted((s.name, s.value, sorted(s.labels.items())) for s in samples) == sorted(
        (name, value, sorted(labels.items())) for name, value, labels in expected
    )


def test_the_delayed_series_are_rendered_with_their_help_and_type():
    """The new series are known to the text format (a series not in METRICS would be dropped)."""
    text = render(
        [
            Sample("platform_delayed_messages", 2, {"level": "12"}),
            Sample("platform_delayed_next_due_seconds", 59.5),
            Sample("platform_delayed_unroutable_messages", 0),
        ]
    )
    assert 'platform_delayed_messages{level="12"} 2' in text.splitlines()
    assert "platform_delayed_next_due_seconds 59.5" in text.splitlines()
    assert "platform_delayed_unroutable_messages 0" in text.splitlines()
    assert "# TYPE platform_delayed_next_due_seconds gauge" in text.splitlines()
