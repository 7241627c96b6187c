"""The email service's tasks (queue ``email``)."""

from __future__ import annotations

from config import app


@app.task(name="tasks.email.send_confirmation", retry_base=0.2)
def send_confirmation(order_id: str, address: str) -> dict[str, object]:
    """Send an order confirmation; an address without '@' crashes the template code."""
    local, domain = address.split("@")  # an unexpected ValueError: "unknown" failure
    return {"order_id": order_id, "sent_to": f"{local}@{domain}"}
