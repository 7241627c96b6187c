"""The CloudEvents envelope, event type names and topic matching (pure)."""

from __future__ import annotations

import json

import pytest

from config.subscriptions import topic_matches
from workers.events.envelope import (
    CloudEvent,
    EnvelopeError,
    EventTypeError,
    is_cloud_event,
    parse_event_type,
    read_event,
)


@pytest.mark.parametrize(
    ("name", "base", "version"),
    [
        pytest.param("order.created", "order.created", 1, id="entity.action"),
        pytest.param("order.created.v2", "order.created", 2, id="with a version"),
        pytest.param("shop.order.created", "shop.order.created", 1, id="domain.entity.action"),
        pytest.param("shop.order.created.v12", "shop.order.created", 12, id="domain and version"),
        pytest.param("order.paid", "order.paid", 1, id="irregular past tense"),
        pytest.param("payment_method.added", "payment_method.added", 1, id="underscores"),
    ],
)
def test_a_good_event_type_is_parsed_into_base_and_version(name: str, base: str, version: int) -> None:
    parsed = parse_event_type(name)
    assert (parsed.base, parsed.version) == (base, version)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        pytest.param("order.create", "past tense", id="present tense"),
        pytest.param("order.cancel.v2", "past tense", id="present tense with version"),
        pytest.param("order", "malformed", id="one word"),
        pytest.param("Order.Created", "malformed", id="upper case"),
        pytest.param("a.b.c.created", "malformed", id="four words"),
        pytest.param("order.created.v0", "malformed", id="version zero"),
        pytest.param("order.created.v1", "no suffix", id="explicit version 1"),
        pytest.param("order.created.", "malformed", id="trailing dot"),
        pytest.param("order.*", "malformed", id="a pattern"),
        pytest.param("", "malformed", id="empty"),
    ],
)
def test_a_malformed_event_type_is_refused_with_a_clear_error(name: str, says: str) -> None:
    with pytest.raises(EventTypeError, match=says):
        parse_event_type(name)


def test_an_event_round_trips_through_binary_mode_headers() -> None:
    event = CloudEvent(id="e-1", source="/orders", type="order.created", time="2026-11-26T10:00:00.000Z")
    body = json.dumps({"order_id": "o-1"}).encode()
    received = read_event(event.headers(), body, "application/json")
    assert received.attributes == {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/orders",
        "type": "order.created",
        "time": "2026-11-26T10:00:00.000Z",
        "datacontenttype": "application/json",
    }
    assert received.data == {"order_id": "o-1"}
    assert all(name.startswith("cloudEvents_") for name in event.headers())


@pytest.mark.parametrize("prefix", ["cloudEvents_", "cloudEvents:", "ce-", "ce_"])
def test_attributes_are_read_under_every_accepted_prefix(prefix: str) -> None:
    headers = {
        f"{prefix}{k}": v
        for k, v in {"id": "1", "source": "/s", "type": "a.b.created", "specversion": "1.0"}.items()
    }
    assert is_cloud_event(headers, "application/json")
    assert read_event(headers, b"{}", "application/json").id == "1"


def test_a_structured_mode_event_is_read_from_its_body() -> None:
    body = json.dumps(
        {"specversion": "1.0", "id": "9", "source": "/x", "type": "order.created", "data": {"order_id": "o"}}
    ).encode()
    received = read_event({}, body, "application/cloudevents+json; charset=utf-8")
    assert (received.id, received.type, received.data) == ("9", "order.created", {"order_id": "o"})


def test_a_body_that_is_not_json_is_reported_not_raised() -> None:
    headers = CloudEvent(id="1", source="/s", type="order.created", time="t").headers()
    received = read_event(headers, b"{not json", "application/json")
    assert received.data is None
    assert "not valid JSON" in (received.data_error or "")


def test_an_event_without_required_attributes_is_an_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match="source"):
        read_event(
            {"cloudEvents_id": "1", "cloudEvents_type": "order.created", "cloudEvents_specversion": "1.0"},
            b"{}",
            "application/json",
        )


def test_a_task_message_is_not_a_cloud_event() -> None:
    assert not is_cloud_event({"task": "tests.ok", "id": "1"}, "application/json")


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.created.v2", False),
        ("order.*", "order.created", True),
        ("order.*", "order.created.v2", False),
        ("order.#", "order.created.v2", True),
        ("order.#", "order", True),
        ("#", "anything.at.all", True),
        ("*.created", "order.created", True),
        ("*.created", "shop.order.created", False),
        ("#.created", "shop.order.created", True),
        ("order.created.*", "order.created", False),
    ],
)
def test_topic_patterns_match_as_rabbitmq_does(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches
