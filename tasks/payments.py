"""The payment service's tasks (queue ``payments``)."""

from __future__ import annotations

from config import app
from workers.errors import TransientError


@app.task(name="tasks.payments.charge", bind=True, retry_base=0.5)
def charge(self, order_id: str, amount: float, fail_times: int = 0) -> dict[str, object]:
    """Charge an order; the gateway times out on the first ``fail_times`` attempts."""
    if self.request.retries < fail_times:
        raise TransientError(f"payment gateway timed out for {order_id}")
    return {"order_id": order_id, "charged": amount, "attempts": self.request.retries + 1}
