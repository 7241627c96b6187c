"""The email service's event handlers (queue ``email.events``)."""

from __future__ import annotations

import logging

from tasks.events.catalog import OrderCreated
from tasks.events.handlers import Event, event_handler

logger = logging.getLogger(__name__)


@event_handler("tasks.events.email.send_order_confirmation", retry_base=0.5)
def send_order_confirmation(event: Event[OrderCreated]) -> dict[str, object]:
    """Send the customer a confirmation of a new order."""
    order = event.data
    logger.info("confirmation for order %s to %s", order.order_id, order.customer_email or "(no address)")
    return {"order_id": order.order_id, "sent_to": order.customer_email}
