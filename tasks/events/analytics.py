"""The analytics service's event handlers (queue ``analytics.events``)."""

from __future__ import annotations

import logging

from tasks.events.catalog import OrderCreated
from tasks.events.handlers import Event, event_handler

logger = logging.getLogger(__name__)


@event_handler("tasks.events.analytics.count_order")
def count_order(event: Event[OrderCreated]) -> dict[str, object]:
    """Count a new order towards the revenue figures."""
    logger.info("order %s: %.2f %s", event.data.order_id, event.data.amount, event.data.currency)
    return {"order_id": event.data.order_id, "amount": event.data.amount}
