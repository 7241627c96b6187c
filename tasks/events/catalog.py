"""The event catalog: one pydantic model per event type and version.

Producers' data is validated against it at publish; consumers validate what
they receive (an invalid event is a permanent failure, dead-lettered at once
with its schema version in ``x-event-schema-version``). Unknown fields are
ignored, so a producer may add optional fields without breaking consumers.

The committed JSON Schema of each entry lives in ``tasks/events/schemas/``;
``celery -A config pubsub schema-check`` fails when a model changes in a way
that breaks consumers (see :mod:`workers.events.schemas`). A breaking change
is a new version: register ``order.created.v2`` with its own model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from workers.events.schemas import SchemaRegistry

#: Every event type and version the platform knows.
REGISTRY = SchemaRegistry()


class EventData(BaseModel):
    """Base of event data models: unknown fields ignored, values immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderLine(EventData):
    """One line of an order."""

    sku: str
    quantity: int = Field(gt=0)


class OrderCreated(EventData):
    """``order.created``: a customer placed an order."""

    order_id: str
    amount: float = Field(gt=0)
    currency: str = "EUR"
    customer_email: str | None = None
    lines: list[OrderLine] = Field(default_factory=list)
    #: The card to charge (the order saga's payment service reads it).
    card: str | None = None


class OrderCancelled(EventData):
    """``order.cancelled``: an order was cancelled before shipping."""

    order_id: str
    reason: str = ""


class PaymentCaptured(EventData):
    """``payment.captured``: the money for an order was taken."""

    order_id: str
    payment_id: str
    amount: float


# -- the order saga's facts (tasks/saga) --


class PaymentSucceeded(EventData):
    """``payment.succeeded``: the order's card was charged."""

    order_id: str
    payment_id: str
    amount: float
    #: The order's lines, for the inventory service to reserve.
    lines: list[OrderLine] = Field(default_factory=list)


class PaymentFailed(EventData):
    """``payment.failed``: the card was declined for good; nothing was charged."""

    order_id: str
    reason: str = ""


class PaymentRefunded(EventData):
    """``payment.refunded``: what was charged for the order was given back (0 if nothing was)."""

    order_id: str
    amount: float = Field(ge=0)
    reason: str = ""


class InventoryReserved(EventData):
    """``inventory.reserved``: the order's stock is set aside."""

    order_id: str
    lines: list[OrderLine] = Field(default_factory=list)


class InventoryFailed(EventData):
    """``inventory.failed``: the order's stock could not be reserved; nothing is held."""

    order_id: str
    reason: str = ""


class OrderConfirmed(EventData):
    """``order.confirmed``: paid and reserved; the order saga ended well."""

    order_id: str
    amount: float


class OrderExpired(EventData):
    """``order.expired``: a step of the order's saga missed its deadline; services undo their part."""

    order_id: str
    state: str


REGISTRY.register("order.created", OrderCreated)
REGISTRY.register("order.confirmed", OrderConfirmed)
REGISTRY.register("order.expired", OrderExpired)
REGISTRY.register("payment.succeeded", PaymentSucceeded)
REGISTRY.register("payment.failed", PaymentFailed)
REGISTRY.register("payment.refunded", PaymentRefunded)
REGISTRY.register("inventory.reserved", InventoryReserved)
REGISTRY.register("inventory.failed", InventoryFailed)
REGISTRY.register("order.cancelled", OrderCancelled)
REGISTRY.register("payment.captured", PaymentCaptured)
