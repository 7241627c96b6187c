"""The order saga end to end: real RabbitMQ (a vhost per test), real ``celery worker`` processes,
the services' tables and the saga log in a SQLite state store.

Each test ends with the invariant checker (:mod:`tasks.saga.invariants`): every saga
ended, no money kept for a cancelled order, no stock held for an order that is
not confirmed, charges - refunds == confirmed total, each transition once in
the log.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from tests.support.cli import run_cli
from tests.support.sagas import SAGA_QUEUES, all_ended, order, saga_environment, snapshot, state, states
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker


def saga_app(env: dict[str, str]) -> Iterator:
    from config.app import create_app
    from config.settings import load_settings

    app = create_app(load_settings(env), main="test-saga-client")
    yield app
    app.close()


def check_invariants(env: dict[str, str]) -> list[str]:
    from tasks.saga.invariants import check

    with state(env) as c:
        return check(c, "?")


def history(env: dict[str, str], saga_id: str) -> list[tuple[str, str, str, str, str]]:
    """``(kind, from, to, event type, service)`` of each log row of the saga."""
    with state(env) as c:
        rows = c.execute(
            "SELECT kind, from_state, to_state, event_type, service FROM saga_log WHERE saga_id = ? ORDER BY seq",
            (saga_id,),
        ).fetchall()
    return [tuple(row) for row in rows]


def scrape_sagas(env: dict[str, str]) -> dict[str, float]:
    """The saga series of one metrics scrape (the exposition text, parsed)."""
    from config.app import create_app, platform_config
    from config.settings import load_settings
    from tests.support.broker import MANAGEMENT_URL
    from workers.ops.metrics import collect, render

    app = create_app(load_settings({**env, "PLATFORM_MANAGEMENT_URL": MANAGEMENT_URL}), main="test-metrics")
    config = platform_config(app)
    text = render(collect(config.settings, config.topology))
    app.close()
    values = {}
    for line in text.splitlines():
        if line.startswith("platform_saga"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


@pytest.fixture
def mix_env(platform_env: dict[str, str]) -> dict[str, str]:
    return saga_environment(platform_env, step_deadline=6)


@pytest.fixture
def mix_app(mix_env: dict[str, str]) -> Iterator:
    yield from saga_app(mix_env)


def test_a_mix_of_orders_ends_each_saga_as_its_facts_say(vhost, mix_env, mix_app, start_worker) -> None:
    """Given the three services' worker and a refund gateway that is down for one card,
    when six orders are placed (in stock, out of stock, declined for good, a gateway
    that times out twice then charges, a gateway slower than the payment step's
    deadline, out of stock with the broken refund), then each saga ends as its
    facts say, the slow one times out on the broker-held deadline and its late
    answer is logged as late, the failing compensation is dead-lettered with its
    saga id and the saga shows compensation_failed, and the invariants hold."""
    from tasks.saga.orders import place_order
    from tasks.saga.payments import set_outage

    set_outage("broken-refunds", True, on=mix_app)
    start_worker(queues=SAGA_QUEUES, concurrency=2, **mix_env)
    cases = {
        "in stock": order(0),
        "out of stock": order(1, sku="lamp"),
        "declined": order(2, card="declined"),
        "flaky gateway": order(3, card="flaky"),
        "slow gateway": order(4, card="slow"),
        "refund fails": order(5, sku="lamp", card="broken-refunds"),
    }
    ids = {name: place_order(data, app=mix_app) for name, data in cases.items()}
    wait_for(lambda: all_ended(mix_env, 6), timeout=90, message=lambda: f"6 sagas to end: {states(mix_env)}")

    ended = states(mix_env)
    assert {name: ended[saga_id] for name, saga_id in ids.items()} == {
        "in stock": "confirmed",
        "out of stock": "cancelled",
        "declined": "cancelled",
        "flaky gateway": "confirmed",
        "slow gateway": "cancelled",
        "refund fails": "compensation_failed",
    }
    assert history(mix_env, ids["out of stock"]) == [
        ("move", None, "payment_pending", "order.created", "orders"),
        ("act", "payment_pending", "payment_pending", "order.created", "payments"),
        ("move", "payment_pending", "stock_pending", "payment.succeeded", "inventory"),
        ("move", "stock_pending", "refunding", "inventory.failed", "payments"),
        ("move", "refunding", "cancelled", "payment.refunded", "orders"),
    ]
    slow = history(mix_env, ids["slow gateway"])
    assert ("move", "payment_pending", "timed_out", "saga.deadline", "orders") in slow
    # The gateway's answer came after the deadline: logged as late by payments, nothing charged.
    wait_for(lambda: any(row[0] == "late" for row in history(mix_env, ids["slow gateway"])), timeout=30)
    assert ("late", "cancelled", "cancelled", "order.created", "payments") in history(mix_env, ids["slow gateway"]) or (
        "late", "timed_out", "timed_out", "order.created", "payments"
    ) in history(mix_env, ids["slow gateway"])  # fmt: skip
    assert history(mix_env, ids["declined"])[-1] == (
        "move",
        "payment_pending",
        "cancelled",
        "payment.failed",
        "orders",
    )

    assert history(mix_env, ids["refund fails"])[-1][2:] == (
        "compensation_failed",
        "saga.dead_letter",
        "payments",
    )
    assert check_invariants(mix_env) == []

    # The metrics and the alert rules' series see it too.
    scraped = scrape_sagas(mix_env)
    assert scraped["platform_sagas_compensation_failed"] == 1
    assert scraped['platform_sagas{state="confirmed"}'] == 2
    assert scraped['platform_sagas{state="cancelled"}'] == 3
    assert scraped["platform_sagas_stuck"] == 0
    assert scraped["platform_saga_oldest_running_age_seconds"] == 0

    # The operator sees the failed compensation with its dead letter, fixes the gateway, retries.
    listed = json.loads(run_cli(mix_env, "saga", "list", "--state", "compensation_failed", "--json").stdout)
    assert [row["saga_id"] for row in listed] == [ids["refund fails"]]
    shown = run_cli(mix_env, "saga", "show", ids["refund fails"], "--json")
    assert shown.returncode == 0, shown.stderr
    [letter] = json.loads(shown.stdout)["dead_letters"]
    assert letter["dead_letter_queue"] == "payments.events.dlq"
    assert letter["error_type"].endswith("GatewayTimeout")
    [message] = vhost.take_all("payments.events.dlq")  # the header operators' tools match on
    assert message.application_headers["cloudEvents_sagaid"] == ids["refund fails"]
    vhost.publish("payments.events.dlq", message.body, headers=message.application_headers)
    set_outage("broken-refunds", False, on=mix_app)
    retried = run_cli(mix_env, "saga", "retry", ids["refund fails"], "--yes")
    assert retried.returncode == 0, retried.stderr
    wait_for(
        lambda: states(mix_env)[ids["refund fails"]] == "cancelled",
        timeout=30,
        message="the retried saga to cancel",
    )
    assert vhost.depth("payments.events.dlq") == 0
    assert history(mix_env, ids["refund fails"])[-1][1:] == (
        "timed_out",
        "cancelled",
        "payment.refunded",
        "orders",
    ) or (
        history(mix_env, ids["refund fails"])[-1][1:]
        == ("refunding", "cancelled", "payment.refunded", "orders")
    )
    again = run_cli(mix_env, "saga", "retry", ids["refund fails"], "--yes")
    assert (again.returncode, again.stderr.count("\n")) == (5, 1)
    assert check_invariants(mix_env) == []


@pytest.fixture
def quick_env(platform_env: dict[str, str]) -> dict[str, str]:
    return saga_environment(platform_env, step_deadline=20)


@pytest.fixture
def quick_app(quick_env: dict[str, str]) -> Iterator:
    yield from saga_app(quick_env)


def test_every_event_delivered_again_twice_in_a_shuffled_order_changes_nothing(
    vhost, quick_env, quick_app, start_worker
) -> None:
    """Given five sagas that ended (confirmed, cancelled after compensation, cancelled
    on payment), when every event and deadline they produced is delivered again,
    twice, shuffled, and with the handlers' completion marks forgotten, then no
    table changes: no second charge, refund, reservation or log row."""
    from tasks.saga.orders import place_order
    from workers.events.publisher import publish_many
    from workers.sagas.outbox import DEADLINE, rebuild_event

    start_worker(queues=SAGA_QUEUES, concurrency=2, **quick_env)
    for data in (order(0), order(1), order(2, sku="lamp"), order(3, card="declined"), order(4, sku="pen")):
        place_order(data, app=quick_app)
    wait_for(
        lambda: all_ended(quick_env, 5), timeout=60, message=lambda: f"5 sagas to end: {states(quick_env)}"
    )
    with state(quick_env) as c:
        rows = c.execute("SELECT row_id, kind, payload FROM saga_outbox").fetchall()
        handled = c.execute("SELECT COUNT(*) FROM completed_tasks WHERE task_id LIKE '%:%'").fetchone()[0]
        c.execute("DELETE FROM completed_tasks")
    before = snapshot(quick_env)

    replay = [(row_id, kind, json.loads(payload)) for row_id, kind, payload in rows] * 2
    random.Random(13).shuffle(replay)
    events = [rebuild_event(payload) for _, kind, payload in replay if kind != DEADLINE]
    publish_many(quick_app, events)
    deadlines = [(row_id, payload) for row_id, kind, payload in replay if kind == DEADLINE]
    for row_id, payload in deadlines:
        quick_app.send_task(payload["task"], args=payload["args"], queue="orders", task_id=row_id)

    def done() -> bool:
        with state(quick_env) as c:
            count = c.execute("SELECT COUNT(*) FROM completed_tasks WHERE task_id LIKE '%:%'").fetchone()[0]
        return count >= handled and all(vhost.depth(q) == 0 for q in SAGA_QUEUES.split(","))

    wait_for(done, timeout=60, message="every replayed event to be handled again")
    wait_for(lambda: len({row_id for row_id, _ in deadlines}) <= completed_deadlines(quick_env), timeout=30)
    assert snapshot(quick_env) == before
    assert check_invariants(quick_env) == []


def completed_deadlines(env: dict[str, str]) -> int:
    with state(env) as c:
        return int(
            c.execute("SELECT COUNT(*) FROM completed_tasks WHERE task_id LIKE 'deadline:%'").fetchone()[0]
        )


def test_facts_committed_but_never_published_are_sent_by_the_relay_to_two_competing_workers(
    vhost, quick_env, start_worker
) -> None:
    """Given orders whose transactions committed but whose facts were never published
    (the placing process relays nothing after commit: as if it died right after
    COMMIT), and workers that also leave every fact to the periodic relay, when two
    workers start and compete on the same queues, then the relay publishes every
    committed fact, all twelve sagas end and each transition is logged once."""
    from tasks.saga.orders import place_order
    from workers.delivery.idempotency import open_store
    from workers.sagas.outbox import pending_count

    env = {**quick_env, "PLATFORM_SAGA_RELAY_AFTER_COMMIT": "false"}
    app = next(saga_app(env))
    mixes = [
        order(n, sku="lamp" if n % 4 == 1 else "pen", card="declined" if n % 4 == 2 else "visa")
        for n in range(12)
    ]
    ids = [place_order(data, app=app) for data in mixes]
    store = open_store(env["PLATFORM_STATE_URL"])
    assert pending_count(store) == 12 + 24  # order.created and two deadlines each, none sent
    start_worker(queues=SAGA_QUEUES, concurrency=2, **env)
    start_worker(queues=SAGA_QUEUES, concurrency=2, **env)
    wait_for(lambda: all_ended(env, 12), timeout=90, message=lambda: f"12 sagas to end: {states(env)}")
    ended = states(env)
    assert sorted(ended[i] for i in ids) == sorted(["confirmed"] * 6 + ["cancelled"] * 6)
    assert check_invariants(env) == []
    app.close()
