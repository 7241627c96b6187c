"""The topology: names, queue arguments and the full set of queues."""

from __future__ import annotations

from collections import Counter

import pytest

from config.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE_ARGUMENTS,
    DELAY_LEVELS,
    DELAYED_EXCHANGE,
    DELAYED_UNROUTABLE,
    TASKS_EXCHANGE,
    Topology,
    WorkQueue,
    dead_letter_queue,
    delay_binding_key,
    delay_level,
    retry_queue,
    retry_queue_arguments,
    work_queue_arguments,
)


@pytest.mark.parametrize(
    ("queue", "tier", "expected"),
    [
        pytest.param("orders", 1, "orders.retry.1", id="orders tier 1"),
        pytest.param("orders", 5, "orders.retry.5", id="orders tier 5"),
        pytest.param("email", 3, "email.retry.3", id="email tier 3"),
    ],
)
def test_retry_queue_names_are_queue_dot_retry_dot_n(queue: str, tier: int, expected: str) -> None:
    assert retry_queue(queue, tier) == expected


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        pytest.param("orders", "orders.dlq", id="orders"),
        pytest.param("payments", "payments.dlq", id="payments"),
    ],
)
def test_dead_letter_queue_names_are_queue_dot_dlq(queue: str, expected: str) -> None:
    assert dead_letter_queue(queue) == expected


@pytest.mark.parametrize(
    ("retry_number", "expected"),
    [
        pytest.param(-1, "orders.retry.1", id="negative clamps to 1"),
        pytest.param(0, "orders.retry.1", id="zero clamps to 1"),
        pytest.param(1, "orders.retry.1", id="first retry"),
        pytest.param(3, "orders.retry.3", id="third retry"),
        pytest.param(5, "orders.retry.5", id="last tier"),
        pytest.param(6, "orders.retry.5", id="beyond the tiers takes the last"),
        pytest.param(100, "orders.retry.5", id="far beyond the tiers takes the last"),
    ],
)
def test_retry_tier_clamps_to_one_through_the_number_of_tiers(retry_number: int, expected: str) -> None:
    assert WorkQueue("orders", retry_tiers=5, delivery_limit=3).retry_tier(retry_number) == expected


def test_a_work_queue_lists_its_delay_queues_and_dlq() -> None:
    queue = WorkQueue("orders", retry_tiers=3, delivery_limit=3)
    assert queue.retry_queues == ("orders.retry.1", "orders.retry.2", "orders.retry.3")
    assert queue.dead_letter_queue == "orders.dlq"


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        pytest.param("x-queue-type", "quorum", id="quorum queue"),
        pytest.param("x-delivery-limit", 4, id="delivery limit is the platform limit + 1"),
        pytest.param("x-dead-letter-exchange", DEAD_LETTER_EXCHANGE, id="dead-letters to the DLX"),
        pytest.param("x-dead-letter-routing-key", "orders", id="dead-letters with its own name"),
        pytest.param("x-dead-letter-strategy", "at-least-once", id="at-least-once dead-lettering"),
        pytest.param("x-overflow", "reject-publish", id="reject-publish overflow"),
    ],
)
def test_work_queue_arguments(argument: str, expected: object) -> None:
    assert work_queue_arguments("orders", delivery_limit=3)[argument] == expected


@pytest.mark.parametrize("limit", [pytest.param(n, id=f"platform limit {n}") for n in (1, 3, 10)])
def test_the_broker_delivery_limit_backs_up_the_platform_limit(limit: int) -> None:
    assert work_queue_arguments("orders", limit)["x-delivery-limit"] == limit + 1


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        pytest.param("x-queue-type", "quorum", id="quorum queue"),
        pytest.param("x-dead-letter-exchange", TASKS_EXCHANGE, id="expires back to the tasks exchange"),
        pytest.param("x-dead-letter-routing-key", "orders", id="with the work queue's name"),
        pytest.param("x-dead-letter-strategy", "at-least-once", id="at-least-once dead-lettering"),
        pytest.param("x-overflow", "reject-publish", id="reject-publish overflow"),
    ],
)
def test_delay_queues_dead_letter_back_to_their_work_queue(argument: str, expected: object) -> None:
    assert retry_queue_arguments("orders")[argument] == expected


def test_delay_queues_have_no_queue_wide_ttl() -> None:
    """Each retry carries its own expiration, so the jitter is kept."""
    assert "x-message-ttl" not in retry_queue_arguments("orders")


def test_dead_letter_queues_are_classic() -> None:
    assert DEAD_LETTER_QUEUE_ARGUMENTS == {"x-queue-type": "classic"}


WORK_QUEUES = ("orders", "payments", "default")
TIERS = 5


@pytest.fixture
def topology() -> Topology:
    return Topology.build(WORK_QUEUES, retry_tiers=TIERS, delivery_limit=3)


def test_all_queues_holds_each_queue_exactly_once(topology: Topology) -> None:
    names = Counter(queue.name for queue in topology.all_queues())
    expected = {
        name
        for queue in WORK_QUEUES
        for name in (queue, *(retry_queue(queue, n) for n in range(1, TIERS + 1)), dead_letter_queue(queue))
    }
    expected |= {delay_level(level) for level in range(DELAY_LEVELS)} | {DELAYED_UNROUTABLE}
    assert set(names) == expected
    assert all(count == 1 for count in names.values())
    assert len(names) == len(WORK_QUEUES) * (1 + TIERS + 1) + DELAY_LEVELS + 1


def test_all_queues_are_durable(topology: Topology) -> None:
    assert all(queue.durable for queue in topology.all_queues())


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in WORK_QUEUES])
def test_a_consumer_queue_is_bound_to_the_tasks_exchange_by_its_name(topology: Topology, name: str) -> None:
    (queue,) = [q for q in topology.consumer_queues() if q.name == name]
    assert queue.exchange.name == TASKS_EXCHANGE
    assert queue.routing_key == name
    assert queue.queue_arguments == work_queue_arguments(name, 3)
    assert (name, DELAYED_EXCHANGE, delay_binding_key(name)) in topology.queue_bindings()


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in WORK_QUEUES])
def test_a_dlq_is_a_classic_queue_bound_to_the_dlx_by_its_work_queue_name(
    topology: Topology, name: str
) -> None:
    (queue,) = [q for q in topology.support_queues() if q.name == dead_letter_queue(name)]
    assert queue.exchange.name == DEAD_LETTER_EXCHANGE
    assert queue.routing_key == name
    assert queue.queue_arguments == {"x-queue-type": "classic"}


@pytest.mark.parametrize("tier", [pytest.param(n, id=f"tier {n}") for n in range(1, TIERS + 1)])
def test_a_delay_queue_is_bound_to_no_named_exchange(topology: Topology, tier: int) -> None:
    """A delay queue bound to the tasks exchange would receive fresh tasks too."""
    (queue,) = [q for q in topology.support_queues() if q.name == retry_queue("orders", tier)]
    assert queue.exchange.name == ""
    assert queue.queue_arguments == retry_queue_arguments("orders")


def test_consumer_queues_are_only_the_work_queues(topology: Topology) -> None:
    assert [queue.name for queue in topology.consumer_queues()] == list(WORK_QUEUES)


@pytest.mark.parametrize(
    ("tiers", "expected"),
    [
        pytest.param(0, 1, id="zero tiers become one"),
        pytest.param(-3, 1, id="negative"),
        pytest.param(2, 2, id="two"),
    ],
)
def test_every_work_queue_has_at_least_one_delay_queue(tiers: int, expected: int) -> None:
    topology = Topology.build(("orders",), retry_tiers=tiers, delivery_limit=3)
    assert len(topology["orders"].retry_queues) == expected


def test_a_topology_is_looked_up_by_queue_name(topology: Topology) -> None:
    assert topology.names == WORK_QUEUES
    assert topology["payments"].name == "payments"
    assert "orders" in topology
    assert "orders.dlq" not in topology
    with pytest.raises(KeyError):
        topology["nope"]


def test_the_exchanges_are_the_durable_direct_tasks_exchange_and_dlx(topology: Topology) -> None:
    tasks, dlx, delayed, unroutable, *levels = topology.exchanges()
    assert (delayed.name, delayed.type) == (DELAYED_EXCHANGE, "topic")
    assert delayed.arguments == {"alternate-exchange": DELAYED_UNROUTABLE}
    assert (unroutable.name, unroutable.type) == (DELAYED_UNROUTABLE, "fanout")
    assert [(level.name, level.type) for level in levels] == [
        (delay_level(n), "topic") for n in range(DELAY_LEVELS)
    ]
    assert (tasks.name, tasks.type, tasks.durable) == (TASKS_EXCHANGE, "direct", True)
    assert (dlx.name, dlx.type, dlx.durable) == (DEAD_LETTER_EXCHANGE, "direct", True)
