"""Subscriptions: parsing the file, the queues they become, and the receive translation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from config.app import build_topology
from config.settings import SettingsError, load_settings
from config.subscriptions import SubscriptionError, load_subscriptions, parse_subscriptions
from config.topology import (
    DELAYED_EXCHANGE,
    EVENTS_EXCHANGE,
    TASKS_EXCHANGE,
    delay_binding_key,
    subscriber_limit_arguments,
)
from workers.events.envelope import CloudEvent
from workers.events.receive import EventDelivery, handler_task_id, translate_event

SEED = Path(__file__).resolve().parents[2] / "config" / "subscriptions.toml"


def test_the_seed_file_subscribes_email_analytics_and_inventory_to_order_created_and_the_order_saga() -> None:
    subscriptions = load_subscriptions(str(SEED))
    assert [(s.service, s.queue, s.patterns) for s in subscriptions] == [
        ("email", "email.events", ("order.created",)),
        ("analytics", "analytics.events", ("order.created",)),
        ("inventory", "inventory.events", ("order.created", "payment.succeeded", "order.expired")),
        ("payments", "payments.events", ("order.created", "inventory.failed", "order.expired")),
        ("orders", "orders.events", ("inventory.reserved", "payment.failed", "payment.refunded")),
    ]
    assert subscriptions[0].modules == ("tasks.events.email",)


def test_a_json_file_works_like_toml(tmp_path: Path) -> None:
    file = tmp_path / "subs.json"
    file.write_text(
        json.dumps({"services": {"fraud": {"events": {"order.*": "tasks.events.fraud.score_order"}}}})
    )
    [fraud] = load_subscriptions(str(file))
    assert fraud.handler_for("order.created") == "tasks.events.fraud.score_order"
    assert fraud.handler_for("payment.captured") is None


def test_the_first_matching_pattern_picks_the_handler() -> None:
    [svc] = parse_subscriptions({"services": {"svc": {"events": {"order.created": "m.a", "order.#": "m.b"}}}})
    assert svc.handler_for("order.created") == "m.a"
    assert svc.handler_for("order.created.v2") == "m.b"


BAD = [
    pytest.param({}, "services", id="no services table"),
    pytest.param({"services": {"Email": {"events": {"a.b": "m.h"}}}}, "name", id="upper-case service"),
    pytest.param({"services": {"email": {}}}, "events", id="no events"),
    pytest.param(
        {"services": {"email": {"events": {"order..created": "m.h"}}}}, "topic pattern", id="bad pattern"
    ),
    pytest.param({"services": {"email": {"events": {"a.b": "handler"}}}}, "dotted", id="undotted handler"),
    pytest.param(
        {"services": {"email": {"events": {"a.b": "m.h"}, "max_length": -1}}},
        "max_length",
        id="negative limit",
    ),
    pytest.param(
        {"services": {"email": {"events": {"a.b": "m.h"}, "overflow": "drop"}}}, "overflow", id="bad overflow"
    ),
    pytest.param(
        {"services": {"email": {"events": {"a.b": "m.h"}, "colour": 1}}}, "unknown keys", id="unknown key"
    ),
]


@pytest.mark.parametrize(("document", "says"), BAD)
def test_a_malformed_subscription_is_refused_naming_the_problem(document: dict[str, Any], says: str) -> None:
    with pytest.raises(SubscriptionError, match=says):
        parse_subscriptions(document)


def test_a_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PLATFORM_SUBSCRIPTIONS_FILE"):
        load_subscriptions(str(tmp_path / "nope.toml"))


def test_without_a_subscriptions_file_the_topology_has_no_event_queues() -> None:
    topology = build_topology(load_settings({}))
    assert not topology.has_events
    assert not any(q.name.endswith(".events") for q in topology.all_queues())


def test_each_subscriber_gets_a_quorum_queue_with_a_ladder_a_dlq_and_its_bindings() -> None:
    topology = build_topology(load_settings({"PLATFORM_SUBSCRIPTIONS_FILE": str(SEED)}))
    names = {q.name for q in topology.all_queues()}
    patterns = {
        "email": {"order.created"},
        "analytics": {"order.created"},
        "inventory": {"order.created", "payment.succeeded", "order.expired"},
        "payments": {"order.created", "inventory.failed", "order.expired"},
        "orders": {"inventory.reserved", "payment.failed", "payment.refunded"},
    }
    for service, keys in patterns.items():
        queue = f"{service}.events"
        assert {queue, f"{queue}.retry.1", f"{queue}.retry.5", f"{queue}.dlq"} <= names
        (consumer,) = [q for q in topology.consumer_queues() if q.name == queue]
        assert consumer.queue_arguments["x-queue-type"] == "quorum"
        assert (consumer.exchange.name, consumer.routing_key) == (TASKS_EXCHANGE, queue)
        bindings = {(exchange, key) for name, exchange, key in topology.queue_bindings() if name == queue}
        assert bindings == {(EVENTS_EXCHANGE, key) for key in keys} | {
            (DELAYED_EXCHANGE, delay_binding_key(queue))
        }
    (log,) = [q for q in topology.all_queues() if q.name == "platform.events.log"]
    assert log.queue_arguments == {"x-queue-type": "stream", "x-max-age": "604800s"}
    assert [e.name for e in topology.exchanges()][-1] == EVENTS_EXCHANGE


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        pytest.param((0, 0, "reject-publish"), {}, id="unbounded"),
        pytest.param((100, 0, "reject-publish"), {"x-max-length": 100}, id="length, refuse publishes"),
        pytest.param(
            (100, 0, "dead-letter"),
            {"x-max-length": 100, "x-overflow": "drop-head", "x-dead-letter-strategy": "at-most-once"},
            id="length, dead-letter the oldest",
        ),
        pytest.param((0, 60, "reject-publish"), {"x-message-ttl": 60000}, id="age"),
    ],
)
def test_subscriber_limits_become_queue_arguments(limits: tuple[int, float, str], expected: dict) -> None:
    assert subscriber_limit_arguments(*limits, queue="q") == expected


class FakeMessage:
    """What the translator reads from a kombu message."""

    def __init__(self, headers: dict[str, Any], body: bytes, content_type: str = "application/json") -> None:
        self.headers = headers
        self.body = body
        self.content_type = content_type
        self.delivery_info = {"consumer_tag": "ctag", "routing_key": "order.created"}
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def test_a_cloud_event_becomes_the_services_handler_task_with_the_body_untouched() -> None:
    [email] = parse_subscriptions(
        {"services": {"email": {"events": {"order.created": "tasks.events.email.h"}}}}
    )
    event = CloudEvent(id="e-1", source="/orders", type="order.created", time="t")
    body = b'{"order_id":"o-1","amount":2}'
    message = FakeMessage(event.headers(), body)
    delivery = translate_event(message, email)
    assert isinstance(delivery, EventDelivery)
    assert message.headers["task"] == "tasks.events.email.h"
    assert message.headers["id"] == handler_task_id("email", "e-1") == "email:e-1"
    assert message.headers["retries"] == 0
    assert message.headers["x-event-schema-version"] == 1
    assert delivery.body is body
    assert delivery.payload["kwargs"]["event"]["data"] == {"order_id": "o-1", "amount": 2}
    assert delivery.payload["args"] == []
    delivery.ack()
    assert message.acked


def test_a_retried_event_keeps_its_retry_count() -> None:
    [email] = parse_subscriptions({"services": {"email": {"events": {"order.created": "m.h"}}}})
    headers = {**CloudEvent(id="e", source="/s", type="order.created", time="t").headers(), "retries": 3}
    translate_event(FakeMessage(headers, b"{}"), email)
    assert headers["retries"] == 3


def test_an_event_no_pattern_matches_gets_a_handler_name_that_dead_letters_as_unknown_task() -> None:
    [email] = parse_subscriptions({"services": {"email": {"events": {"order.created": "m.h"}}}})
    headers = CloudEvent(id="e", source="/s", type="order.cancelled", time="t").headers()
    translate_event(FakeMessage(headers, b"{}"), email)
    assert headers["task"] == "events.no-handler-for.email.order.cancelled"


def test_a_message_that_is_no_cloud_event_is_left_alone() -> None:
    [email] = parse_subscriptions({"services": {"email": {"events": {"order.created": "m.h"}}}})
    message = FakeMessage({"task": "tests.ok", "id": "1"}, b"[[], {}, {}]")
    assert translate_event(message, email) is message
