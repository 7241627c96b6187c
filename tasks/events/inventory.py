"""The inventory service's event handlers (queue ``inventory.events``)."""

from __future__ import annotations

import logging

from tasks.events.catalog import OrderCreated
from tasks.events.handlers import Event, event_handler

logger = logging.getLogger(__name__)


@event_handler("tasks.events.inventory.reserve_stock")
def reserve_stock(event: Event[OrderCreated]) -> dict[str, object]:
    """Reserve stock for every line of a new order."""
    reserved = {line.sku: line.quantity for line in event.data.lines}
    logger.info("order %s: reserved %s", event.data.order_id, reserved)
    return {"order_id": event.data.order_id, "reserved": reserved}
