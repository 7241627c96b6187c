"""The order saga, declared once: states, which fact moves which state, deadlines, compensations.

::

    payment_pending --payment.succeeded--> stock_pending --inventory.reserved--> confirmed
          |                                      |
          +--payment.failed--> cancelled         +--inventory.failed--> refunding --payment.refunded--> cancelled
    (payment_pending | stock_pending) --deadline--> timed_out --payment.refunded--> cancelled
    any running state --compensation dead-lettered--> compensation_failed

Acts (a service works, the saga stays): payments charges on ``order.created``
in ``payment_pending``; payments refunds and inventory releases on
``order.expired`` in ``timed_out`` (and later states, as ``order.expired``
may reach inventory after payments' refund cancelled the order).
"""

from __future__ import annotations

from config import app
from config.app import platform_config
from workers.sagas.definition import COMPENSATION_FAILED, RESOLVED, SagaDefinition

#: The saga type recorded with every order saga.
NAME = "order"
#: The task the broker delivers when a step's deadline passes (queue ``orders``).
DEADLINE_TASK = "tasks.saga.orders.deadline_passed"
#: States in which ``order.expired`` still has work to undo (payments refund, inventory release).
AFTER_EXPIRY = ("timed_out", "cancelled", COMPENSATION_FAILED, RESOLVED)


def order_saga(step_deadline: float) -> SagaDefinition:
    """The order saga with ``step_deadline`` seconds per step (3 steps' worth for the whole saga)."""
    return SagaDefinition(
        name=NAME,
        initial="payment_pending",
        moves={
            ("payment_pending", "payment.succeeded"): "stock_pending",
            ("payment_pending", "payment.failed"): "cancelled",
            ("stock_pending", "inventory.reserved"): "confirmed",
            ("stock_pending", "inventory.failed"): "refunding",
            ("refunding", "payment.refunded"): "cancelled",
            ("timed_out", "payment.refunded"): "cancelled",
        },
        acts=frozenset(
            {("payment_pending", "order.created")} | {(state, "order.expired") for state in AFTER_EXPIRY}
        ),
        terminal=frozenset({"confirmed", "cancelled"}),
        timeout_state="timed_out",
        step_deadlines={"payment_pending": step_deadline, "stock_pending": step_deadline},
        saga_deadline=3 * step_deadline,
        compensations={"refunding": "inventory.failed", "timed_out": "order.expired"},
        deadline_task=DEADLINE_TASK,
        deadline_queue="orders",
    )


#: The order saga with this process's ``PLATFORM_SAGA_STEP_DEADLINE``.
ORDER_SAGA = order_saga(platform_config(app).settings.saga_step_deadline)
