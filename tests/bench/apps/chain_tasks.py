"""The bare event chain of the saga case: the order saga's hops without the saga runtime.

``order.created`` -> payments publishes ``payment.succeeded`` -> inventory
publishes ``inventory.reserved`` -> orders publishes ``order.confirmed`` and
counts the completion (:func:`tests.bench.apps.marks.count`). Each handler is
an ordinary platform event handler (late ack, idempotency mark, one confirmed
``tasks.events.publish``), with no saga log, no outbox, no deadlines and no
service tables: what the saga adds is the difference. Subscribed by
``tests/bench/apps/chain_subscriptions.toml``.
"""

from __future__ import annotations

import uuid

from tasks.events import publish
from tasks.events.catalog import InventoryReserved, OrderCreated, PaymentSucceeded
from tasks.events.handlers import Event, event_handler
from tests.bench.apps import marks


@event_handler("tests.bench.apps.chain_tasks.charge")
def charge(event: Event[OrderCreated]) -> str:
    """Payments: ``payment.succeeded`` for the order."""
    order = event.data
    lines = [line.model_dump() for line in order.lines]
    data = {
        "order_id": order.order_id,
        "payment_id": str(uuid.uuid4()),
        "amount": order.amount,
        "lines": lines,
    }
    return publish("payment.succeeded", data, source="/shop/payments")


@event_handler("tests.bench.apps.chain_tasks.reserve")
def reserve(event: Event[PaymentSucceeded]) -> str:
    """Inventory: ``inventory.reserved`` for the paid order."""
    lines = [line.model_dump() for line in event.data.lines]
    return publish(
        "inventory.reserved", {"order_id": event.data.order_id, "lines": lines}, source="/shop/inventory"
    )


@event_handler("tests.bench.apps.chain_tasks.confirm")
def confirm(event: Event[InventoryReserved]) -> str:
    """Orders: ``order.confirmed``, then count the chain as done."""
    sent = publish("order.confirmed", {"order_id": event.data.order_id, "amount": 1.0}, source="/shop/orders")
    marks.count()
    return sent
