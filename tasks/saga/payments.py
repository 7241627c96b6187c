"""The payment service in the saga: its ``saga_payments`` table, charges and refunds (compensations).

The card gateway is simulated by the card named in the order:

- ``declined``: declined for good (``payment.failed``, nothing charged);
- ``flaky``: the gateway times out on the first two attempts, then charges;
- ``slow``: the gateway times out until after the payment step's deadline
  (its answer is then late and changes nothing);
- any card listed by :func:`set_outage`: charges work, refunds time out until
  the outage is lifted (the compensation that keeps failing);
- anything else: charged.

Refunds are once per order (the row's ``refunded`` column), and a refund of a
charge that never happened is a logged no-op that still tells the order
service (``payment.refunded`` of 0), so the saga can end.
"""

from __future__ import annotations

import logging
import uuid

from celery import Celery

from config import app
from config.app import platform_config
from tasks.events.catalog import InventoryFailed, OrderCreated, OrderExpired
from tasks.events.handlers import Event
from tasks.saga.definition import ORDER_SAGA
from tasks.saga.handler import fact, saga_handler
from workers.delivery.idempotency import open_store
from workers.errors import TransientError
from workers.sagas.step import SagaStep

logger = logging.getLogger(__name__)

#: The service name in the saga log.
SERVICE = "payments"
#: The payment service's tables.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS saga_payments ("
    " order_id TEXT PRIMARY KEY, saga_id TEXT NOT NULL, card TEXT NOT NULL, payment_id TEXT NOT NULL,"
    " charged DOUBLE PRECISION NOT NULL, refunded DOUBLE PRECISION NOT NULL, status TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS saga_gateway_outages (card TEXT PRIMARY KEY)",
)
#: Attempts on which the ``flaky`` card's gateway times out.
FLAKY_ATTEMPTS = 2
#: Seconds after the payment step's deadline until which the ``slow`` card's gateway times out.
SLOW_MARGIN = 1.0


class GatewayTimeout(TransientError):
    """The simulated card gateway did not answer in time."""


def open_tables(connection: object) -> None:
    for statement in SCHEMA:
        connection.execute(statement)  # type: ignore[attr-defined]


def set_outage(card: str, down: bool, on: Celery = app) -> None:
    """Make the gateway's refunds for ``card`` time out (``down``) or work again (state store of ``on``)."""
    store = open_store(platform_config(on).settings.state_url)
    p = store.placeholder
    with store.transaction() as connection:
        open_tables(connection)
        connection.execute(f"DELETE FROM saga_gateway_outages WHERE card = {p}", (card,))
        if down:
            connection.execute(f"INSERT INTO saga_gateway_outages VALUES ({p})", (card,))


def _out(step: SagaStep, card: str) -> bool:
    row = step.connection.execute(
        f"SELECT 1 FROM saga_gateway_outages WHERE card = {step.placeholder}", (card,)
    ).fetchone()
    return row is not None


@saga_handler("tasks.saga.payments.charge", service=SERVICE, retry_base=0.5, max_retries=8)
def charge(step: SagaStep, event: Event[OrderCreated]) -> dict[str, object]:
    """Charge the order's card: ``payment.succeeded`` or ``payment.failed``."""
    order = event.data
    if not step.acting:
        return {"order_id": order.order_id, "charged": 0.0, "state": step.saga.state}
    open_tables(step.connection)
    card = order.card or "visa"
    attempt = app.current_task.request.retries or 0
    if card == "flaky" and attempt < FLAKY_ATTEMPTS:
        raise GatewayTimeout(f"card gateway timed out charging {order.order_id} (attempt {attempt + 1})")
    deadline = ORDER_SAGA.deadline_of("payment_pending") or 0.0
    if card == "slow" and step.now < step.saga.started_at + deadline + SLOW_MARGIN:
        raise GatewayTimeout(f"card gateway is slow charging {order.order_id}")
    p = step.placeholder
    payment_id = str(uuid.uuid4())
    if card == "declined":
        step.connection.execute(
            f"INSERT INTO saga_payments VALUES ({p}, {p}, {p}, {p}, 0, 0, 'declined')",
            (order.order_id, step.saga.saga_id, card, payment_id),
        )
        step.emit(fact(SERVICE, "payment.failed", {"order_id": order.order_id, "reason": "card declined"}))
        return {"order_id": order.order_id, "charged": 0.0, "state": step.saga.state}
    step.connection.execute(
        f"INSERT INTO saga_payments VALUES ({p}, {p}, {p}, {p}, {p}, 0, 'charged')",
        (order.order_id, step.saga.saga_id, card, payment_id, order.amount),
    )
    lines = [line.model_dump() for line in order.lines]
    succeeded = {"order_id": order.order_id, "payment_id": payment_id, "amount": order.amount, "lines": lines}
    step.emit(fact(SERVICE, "payment.succeeded", succeeded))
    return {"order_id": order.order_id, "charged": order.amount, "state": step.saga.state}


def _refund(step: SagaStep, order_id: str, reason: str) -> dict[str, object]:
    """Give back what was charged for the order, once; a refund of nothing is a logged no-op."""
    if not step.acting:
        return {"order_id": order_id, "refunded": 0.0, "state": step.saga.state}
    open_tables(step.connection)
    p = step.placeholder
    row = step.connection.execute(
        f"SELECT card, charged, refunded FROM saga_payments WHERE order_id = {p}", (order_id,)
    ).fetchone()
    amount = 0.0
    if row is None or float(row[1]) - float(row[2]) <= 0:
        logger.info("order %s: nothing charged to refund (%s); no-op", order_id, reason)
    else:
        if _out(step, str(row[0])):
            raise GatewayTimeout(f"card gateway timed out refunding {order_id}")
        amount = float(row[1]) - float(row[2])
        step.connection.execute(
            f"UPDATE saga_payments SET refunded = charged, status = 'refunded' WHERE order_id = {p}",
            (order_id,),
        )
    if amount or step.saga.state in ("refunding", "timed_out"):
        step.emit(
            fact(SERVICE, "payment.refunded", {"order_id": order_id, "amount": amount, "reason": reason})
        )
    return {"order_id": order_id, "refunded": amount, "state": step.saga.state}


@saga_handler(
    "tasks.saga.payments.refund_unreserved", service=SERVICE, compensation=True, retry_base=0.5, max_retries=3
)
def refund_unreserved(step: SagaStep, event: Event[InventoryFailed]) -> dict[str, object]:
    """Compensation: stock could not be reserved, so the charge is refunded."""
    return _refund(step, event.data.order_id, f"stock not reserved: {event.data.reason}")


@saga_handler(
    "tasks.saga.payments.refund_expired", service=SERVICE, compensation=True, retry_base=0.5, max_retries=3
)
def refund_expired(step: SagaStep, event: Event[OrderExpired]) -> dict[str, object]:
    """Compensation: a step missed its deadline, so whatever was charged is refunded."""
    return _refund(step, event.data.order_id, f"deadline of {event.data.state} passed")
