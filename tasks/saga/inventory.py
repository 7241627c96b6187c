"""The inventory service in the saga: its stock and reservations, reserving and releasing.

Stock starts as :data:`tasks.inventory.STOCK` (``book`` 10, ``pen`` 100,
``lamp`` 0) the first time the tables are made; :func:`restock` sets it.
"""

from __future__ import annotations

from celery import Celery

from config import app
from config.app import platform_config
from tasks.events.catalog import OrderExpired, PaymentSucceeded
from tasks.events.handlers import Event
from tasks.inventory import STOCK
from tasks.saga.handler import fact, saga_handler
from workers.delivery.idempotency import open_store
from workers.sagas.step import SagaStep

#: The service name in the saga log.
SERVICE = "inventory"
#: The inventory service's tables.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS saga_stock (sku TEXT PRIMARY KEY, on_hand INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS saga_reservations ("
    " order_id TEXT NOT NULL, sku TEXT NOT NULL, saga_id TEXT NOT NULL, quantity INTEGER NOT NULL,"
    " status TEXT NOT NULL, PRIMARY KEY (order_id, sku))",
)


def open_tables(connection: object, p: str) -> None:
    """Create the tables, with the starting stock, if they are missing."""
    for statement in SCHEMA:
        connection.execute(statement)  # type: ignore[attr-defined]
    for sku, quantity in STOCK.items():
        connection.execute(  # type: ignore[attr-defined]
            f"INSERT INTO saga_stock VALUES ({p}, {p}) ON CONFLICT (sku) DO NOTHING", (sku, quantity)
        )


def restock(levels: dict[str, int], on: Celery = app) -> None:
    """Set the stock on hand of each sku (in the state store of ``on``)."""
    store = open_store(platform_config(on).settings.state_url)
    p = store.placeholder
    with store.transaction() as connection:
        open_tables(connection, p)
        for sku, quantity in levels.items():
            connection.execute(f"DELETE FROM saga_stock WHERE sku = {p}", (sku,))
            connection.execute(f"INSERT INTO saga_stock VALUES ({p}, {p})", (sku, quantity))


@saga_handler("tasks.saga.inventory.reserve", service=SERVICE, retry_base=0.5)
def reserve(step: SagaStep, event: Event[PaymentSucceeded]) -> dict[str, object]:
    """Reserve every line, or none: ``inventory.reserved`` or ``inventory.failed``."""
    order_id = event.data.order_id
    if not step.acting:
        return {"order_id": order_id, "reserved": False, "state": step.saga.state}
    c, p = step.connection, step.placeholder
    open_tables(c, p)
    short = []
    for line in event.data.lines:
        row = c.execute(f"SELECT on_hand FROM saga_stock WHERE sku = {p}", (line.sku,)).fetchone()
        if row is None or int(row[0]) < line.quantity:
            short.append(f"{line.quantity} x {line.sku} ({0 if row is None else row[0]} on hand)")
    if short:
        step.emit(
            fact(
                SERVICE, "inventory.failed", {"order_id": order_id, "reason": "short of " + ", ".join(short)}
            )
        )
        return {"order_id": order_id, "reserved": False, "state": step.saga.state}
    for line in event.data.lines:
        c.execute(f"UPDATE saga_stock SET on_hand = on_hand - {p} WHERE sku = {p}", (line.quantity, line.sku))
        c.execute(
            f"INSERT INTO saga_reservations VALUES ({p}, {p}, {p}, {p}, 'reserved')",
            (order_id, line.sku, step.saga.saga_id, line.quantity),
        )
    lines = [line.model_dump() for line in event.data.lines]
    step.emit(fact(SERVICE, "inventory.reserved", {"order_id": order_id, "lines": lines}))
    return {"order_id": order_id, "reserved": True, "state": step.saga.state}


@saga_handler(
    "tasks.saga.inventory.release", service=SERVICE, compensation=True, retry_base=0.5, max_retries=3
)
def release(step: SagaStep, event: Event[OrderExpired]) -> dict[str, object]:
    """Compensation: the saga timed out, so stock reserved for the order goes back on the shelf."""
    order_id = event.data.order_id
    if not step.acting:
        return {"order_id": order_id, "released": 0, "state": step.saga.state}
    c, p = step.connection, step.placeholder
    open_tables(c, p)
    rows = c.execute(
        f"SELECT sku, quantity FROM saga_reservations WHERE order_id = {p} AND status = 'reserved'",
        (order_id,),
    ).fetchall()
    for sku, quantity in rows:
        c.execute(f"UPDATE saga_stock SET on_hand = on_hand + {p} WHERE sku = {p}", (quantity, sku))
    c.execute(f"UPDATE saga_reservations SET status = 'released' WHERE order_id = {p}", (order_id,))
    return {"order_id": order_id, "released": sum(int(q) for _, q in rows), "state": step.saga.state}
