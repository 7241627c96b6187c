"""The order service's tasks (queue ``orders``)."""

from __future__ import annotations

from config import app
from workers.errors import PermanentError


@app.task(name="tasks.orders.create_order")
def create_order(order_id: str, amount: float) -> dict[str, object]:
    """Accept an order; a non-positive amount breaks a business rule."""
    if amount <= 0:
        raise PermanentError(f"order {order_id}: amount must be positive, got {amount}")
    return {"order_id": order_id, "status": "created", "amount": amount}
