"""The fraud-detection service's event handlers (queue ``fraud.events``).

The seed's later subscriber: it subscribes to ``order.created`` through the
subscriptions file alone, with no change to the order service.
"""

from __future__ import annotations

import logging

from tasks.events.catalog import OrderCreated
from tasks.events.handlers import Event, event_handler

logger = logging.getLogger(__name__)

#: Orders above this amount are flagged for review.
REVIEW_ABOVE = 1000.0


@event_handler("tasks.events.fraud.score_order")
def score_order(event: Event[OrderCreated]) -> dict[str, object]:
    """Score a new order; large ones are flagged for a human to review."""
    flagged = event.data.amount > REVIEW_ABOVE
    logger.info("order %s scored: %s", event.data.order_id, "review" if flagged else "ok")
    return {"order_id": event.data.order_id, "flagged": flagged}
