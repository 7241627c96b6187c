"""The saga tables and the outbox on a real SQLite state store (no broker)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from workers.delivery.idempotency import SQLiteStore
from workers.events.envelope import CloudEvent
from workers.events.publisher import OutgoingEvent
from workers.sagas import outbox, store
from workers.sagas.step import open_tables


@pytest.fixture
def db(tmp_path: Path) -> SQLiteStore:
    state = SQLiteStore(str(tmp_path / "state.sqlite3"))
    with state.transaction() as connection:
        open_tables(connection)
    return state


def event(n: int) -> OutgoingEvent:
    attributes = CloudEvent(
        id=f"e-{n}", source="/shop/orders", type="order.created", time="2026-12-07T00:00:00Z"
    )
    return OutgoingEvent(attributes, b'{"order_id":"o-1","amount":1.0}')


def test_a_move_applied_on_a_stale_read_conflicts_instead_of_overwriting(db: SQLiteStore) -> None:
    """Given two workers that read the saga at version 1, when both move it, then the
    second gets SagaConflict (retried with backoff) and the first move stands."""
    with db.transaction() as c:
        store.create(c, "?", "s-1", "order", "payment_pending", {}, 1.0)
    with db.transaction() as c:
        read_by_first = store.require(c, "?", "s-1")
    read_by_second = read_by_first
    with db.transaction() as c:
        store.move(c, "?", read_by_first, "stock_pending", 2.0)
    with pytest.raises(store.SagaConflict), db.transaction() as c:
        store.move(c, "?", read_by_second, "cancelled", 3.0)
    with db.transaction() as c:
        saga = store.require(c, "?", "s-1")
    assert (saga.state, saga.version) == ("stock_pending", 2)


def test_the_log_refuses_one_event_twice_from_one_service(db: SQLiteStore) -> None:
    """The database holds the line too: (saga, event, service) is unique in the log."""
    with db.transaction() as c:
        store.append_log(
            c, "?", "s-1", None, "payment_pending", "e-1", "order.created", "orders", store.MOVE, 1.0
        )
        store.append_log(
            c,
            "?",
            "s-1",
            "payment_pending",
            "payment_pending",
            "e-1",
            "order.created",
            "payments",
            store.ACT,
            1.0,
        )
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as c:
        store.append_log(c, "?", "s-1", "a", "b", "e-1", "order.created", "orders", store.MOVE, 2.0)
    with db.transaction() as c:
        assert [(e.seq, e.service) for e in store.history(c, "?", "s-1")] == [(1, "orders"), (2, "payments")]


def test_a_rolled_back_transaction_leaves_nothing_to_relay(db: SQLiteStore) -> None:
    """Given an event written to the outbox, when its transaction rolls back, there is no row to publish."""
    with pytest.raises(RuntimeError), db.transaction() as c:
        outbox.add_event(c, "?", "s-1", event(1), 1.0)
        raise RuntimeError("the service's change failed")
    with db.transaction() as c:
        outbox.add_event(c, "?", "s-2", event(2), 1.0)
    assert [row_id for row_id, _, _ in outbox.unsent(db)] == ["e-2"]


def test_an_outbox_row_becomes_the_same_cloud_event_with_the_saga_id() -> None:
    """The relay publishes what was committed: same id, type, source, time, body, plus sagaid."""
    state = SQLiteStore(":memory:")
    with state.transaction() as c:
        open_tables(c)
        outbox.add_event(c, "?", "s-9", event(7), 1.0)
    [(_, kind, payload)] = outbox.unsent(state)
    rebuilt = outbox.rebuild_event(payload)
    assert kind == outbox.EVENT
    assert rebuilt.body == event(7).body
    assert rebuilt.headers() == {**event(7).headers(), "cloudEvents_sagaid": "s-9"}


def test_a_new_database_gets_its_tables_even_on_a_connection_at_a_closed_ones_address() -> None:
    """The schema is created once per connection. A connection opened after another was
    closed and collected often gets the same address (``id``); it is a new database all
    the same (here: in memory) and must get its tables (this used to fail now and then)."""
    import gc
    import sqlite3

    from workers.sagas import store as saga_store

    first = sqlite3.connect(":memory:")
    saga_store.ensure_schema(first)
    address = id(first)
    first.close()
    del first
    gc.collect()
    for _ in range(50):
        connection = sqlite3.connect(":memory:")
        saga_store.ensure_schema(connection)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "saga_instances" in tables
        if id(connection) == address:
            break
