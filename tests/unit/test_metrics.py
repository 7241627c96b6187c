"""Metrics without a broker: queue classification, samples and the text format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from config.topology import Topology
from workers.ops.dlq import dlq_stats
from workers.ops.metrics import Sample, dead_letter_samples, queue_samples, render
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
    ],
)
def test_queues_are_classified_as_work_retry_dead_letter_subscriber_or_internal(name, kind, work_queue):
    """The topology names work, retry and DLQs; Celery's and RabbitMQ's own queues are internal."""
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
