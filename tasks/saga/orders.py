"""The order service in the saga: its ``saga_orders`` table, placing orders, confirming and cancelling.

Placing an order writes the order, the new saga, ``order.created`` and the
step's deadlines in one transaction, then relays them. The service moves the
saga on ``inventory.reserved`` (confirmed), ``payment.failed`` and
``payment.refunded`` (cancelled), and when a deadline the broker held comes
due (timed out: ``order.expired`` asks payments and inventory to undo).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from config import app
from config import app as default_app
from config.app import platform_config
from tasks.events.catalog import InventoryReserved, OrderCreated, PaymentFailed, PaymentRefunded
from tasks.events.handlers import Event
from tasks.saga.definition import ORDER_SAGA, order_saga
from tasks.saga.handler import fact, saga_handler
from workers.delivery.idempotency import open_store
from workers.sagas.step import SagaStep, begin, deadline_step, relay_after_commit

if TYPE_CHECKING:
    from celery import Celery

#: The service name in the saga log.
SERVICE = "orders"
#: The order service's table.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS saga_orders ("
    " order_id TEXT PRIMARY KEY, saga_id TEXT NOT NULL, amount DOUBLE PRECISION NOT NULL,"
    " status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '')"
)


def place_order(
    order: OrderCreated | dict[str, Any], saga_id: str | None = None, app: Celery = default_app
) -> str:
    """Place an order: its row, its saga and ``order.created``, committed together, then relayed.

    Args:
        order: the order (``order.created``'s data).
        saga_id: the saga's id (default: a new UUID).
        app: the platform app whose broker and state store are used.

    Returns:
        The saga id (a new UUID unless given).

    Raises:
        EventSchemaError: the order does not match ``order.created``'s schema.
    """
    saga_id = saga_id or str(uuid.uuid4())
    first = fact(SERVICE, "order.created", order if isinstance(order, dict) else order.model_dump(), app)
    data = OrderCreated.model_validate_json(first.body)
    store = open_store(platform_config(app).settings.state_url)
    p = store.placeholder
    with store.transaction() as connection:
        connection.execute(SCHEMA)
        connection.execute(
            f"INSERT INTO saga_orders VALUES ({p}, {p}, {p}, 'pending', '')",
            (data.order_id, saga_id, data.amount),
        )
        # This app's deadlines (the handlers use their worker's: the same setting, normally).
        definition = order_saga(platform_config(app).settings.saga_step_deadline)
        step = begin(connection, p, definition, saga_id, SERVICE, first, {"order_id": data.order_id})
    relay_after_commit(app, store, step.rows)
    return saga_id


def _set_status(step: SagaStep, order_id: str, status: str, reason: str = "") -> None:
    p = step.placeholder
    step.connection.execute(SCHEMA)
    step.connection.execute(
        f"UPDATE saga_orders SET status = {p}, reason = {p} WHERE order_id = {p}", (status, reason, order_id)
    )


@saga_handler("tasks.saga.orders.confirm", service=SERVICE)
def confirm(step: SagaStep, event: Event[InventoryReserved]) -> dict[str, object]:
    """Stock is reserved: the order is confirmed (``order.confirmed``)."""
    order_id = event.data.order_id
    if not step.acting:
        return {"order_id": order_id, "applied": False, "state": step.saga.state}
    _set_status(step, order_id, "confirmed")
    row = step.connection.execute(
        f"SELECT amount FROM saga_orders WHERE order_id = {step.placeholder}", (order_id,)
    ).fetchone()
    step.emit(fact(SERVICE, "order.confirmed", {"order_id": order_id, "amount": float(row[0])}))
    return {"order_id": order_id, "applied": True, "state": step.saga.state}


def _cancel(step: SagaStep, order_id: str, reason: str) -> dict[str, object]:
    if not step.acting:
        return {"order_id": order_id, "applied": False, "state": step.saga.state}
    _set_status(step, order_id, "cancelled", reason)
    step.emit(fact(SERVICE, "order.cancelled", {"order_id": order_id, "reason": reason}))
    return {"order_id": order_id, "applied": True, "state": step.saga.state}


@saga_handler("tasks.saga.orders.cancel_unpaid", service=SERVICE)
def cancel_unpaid(step: SagaStep, event: Event[PaymentFailed]) -> dict[str, object]:
    """The card was declined for good: cancel (no stock was touched)."""
    return _cancel(step, event.data.order_id, f"payment failed: {event.data.reason}")


@saga_handler("tasks.saga.orders.cancel_refunded", service=SERVICE)
def cancel_refunded(step: SagaStep, event: Event[PaymentRefunded]) -> dict[str, object]:
    """The payment was given back (after a failed reservation or a timeout): cancel."""
    return _cancel(step, event.data.order_id, f"refunded: {event.data.reason}")


@app.task(name="tasks.saga.orders.deadline_passed", bind=True)
def deadline_passed(self: Any, saga_id: str, expected: str | None, deadline_id: str) -> dict[str, object]:
    """The broker delivered a deadline: if the saga is still where it was, it times out (``order.expired``)."""
    with deadline_step(self, ORDER_SAGA, SERVICE, saga_id, expected, deadline_id) as step:
        if not step.acting:
            return {"saga_id": saga_id, "fired": False, "state": step.saga.state}
        order_id = str(step.saga.data["order_id"])
        _set_status(step, order_id, "timing out", f"deadline of {expected or 'the saga'} passed")
        step.emit(fact(SERVICE, "order.expired", {"order_id": order_id, "state": expected or "saga"}))
        return {"saga_id": saga_id, "fired": True, "state": step.saga.state}
