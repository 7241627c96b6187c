"""Helpers for the order saga's tests: its environment, orders, reading the state store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.worker import ROOT
from workers.delivery.idempotency import SQLiteStore

#: The queues a saga worker consumes: the three services' subscriber queues and the deadlines' work queue.
SAGA_QUEUES = "orders.events,payments.events,inventory.events,orders"
#: Every queue a saga's message can wait in, but the delay levels.
SAGA_DLQS = ("orders.events.dlq", "payments.events.dlq", "inventory.events.dlq", "orders.dlq")


def saga_environment(env: dict[str, str], step_deadline: float, **overrides: str) -> dict[str, str]:
    """``env`` with the saga's subscriptions, a short step deadline and a fast relay."""
    return {
        **env,
        "PLATFORM_SUBSCRIPTIONS_FILE": str(ROOT / "config" / "subscriptions.toml"),
        "PLATFORM_SAGA_STEP_DEADLINE": str(step_deadline),
        "PLATFORM_SAGA_RELAY_INTERVAL": "0.5",
        **overrides,
    }


def order(n: int, sku: str = "book", card: str = "visa", quantity: int = 1) -> dict[str, Any]:
    """An order's data for ``order.created``."""
    return {
        "order_id": f"o-{n}",
        "amount": 10.0 + n,
        "lines": [{"sku": sku, "quantity": quantity}],
        "card": card,
    }


@contextmanager
def state(env: dict[str, str]) -> Iterator[Any]:
    """A transaction on the test's SQLite state store (read what the services wrote)."""
    path = env["PLATFORM_STATE_URL"].removeprefix("sqlite:///")
    store = SQLiteStore(path)
    with store.transaction() as connection:
        yield connection


def states(env: dict[str, str]) -> dict[str, str]:
    """``saga id -> state`` of every saga."""
    if not Path(env["PLATFORM_STATE_URL"].removeprefix("sqlite:///")).exists():
        return {}
    with state(env) as c:
        return {str(saga_id): str(s) for saga_id, s in c.execute("SELECT saga_id, state FROM saga_instances")}


def all_ended(env: dict[str, str], count: int) -> bool:
    """Whether ``count`` sagas exist and each has ended."""
    from tasks.saga.invariants import ENDINGS

    found = states(env)
    return len(found) == count and all(s in ENDINGS for s in found.values())


def snapshot(env: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the saga's and the services' tables (not the outbox, not completions)."""
    tables = {
        "saga_instances": "saga_id",
        "saga_log": "saga_id, seq",
        "saga_orders": "order_id",
        "saga_payments": "order_id",
        "saga_stock": "sku",
        "saga_reservations": "order_id, sku",
    }
    with state(env) as c:
        return {
            name: c.execute(f"SELECT * FROM {name} ORDER BY {key}").fetchall() for name, key in tables.items()
        }
