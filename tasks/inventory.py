"""The inventory service's tasks (queue ``inventory``)."""

from __future__ import annotations

from config import app
from workers.errors import BusinessRuleViolation

#: Stock on hand in the demo warehouse.
STOCK = {"book": 10, "pen": 100, "lamp": 0}


@app.task(name="tasks.inventory.reserve")
def reserve(order_id: str, sku: str, quantity: int) -> dict[str, object]:
    """Reserve stock; an unknown or sold-out item can never be reserved."""
    if STOCK.get(sku, 0) < quantity:
        raise BusinessRuleViolation(f"cannot reserve {quantity} x {sku!r} for {order_id}")
    return {"order_id": order_id, "sku": sku, "reserved": quantity}
