"""The order saga: orders, payments and inventory, each with its own tables, kept consistent by facts.

::

    place_order ─ order.created ──> payments: charge ─ payment.succeeded ──> inventory: reserve
                                        │                                      │
                                        └ payment.failed ──> orders: cancel    ├ inventory.reserved ──> orders: confirm
                                                                               └ inventory.failed ──> payments: refund
                                                                                   ─ payment.refunded ──> orders: cancel
    a step's deadline (held by the broker) ──> orders: time out ─ order.expired ──> payments: refund,
                                                                                   inventory: release

- :mod:`tasks.saga.definition`: the states, moves and deadlines, as data.
- :mod:`tasks.saga.orders`, :mod:`tasks.saga.payments`, :mod:`tasks.saga.inventory`:
  each service's tables and handlers (subscriptions: ``config/subscriptions.toml``).
- :mod:`tasks.saga.handler`: how a handler joins the saga (its step, its compensation's failure).
- :mod:`tasks.saga.invariants`: what must hold once every saga has ended.
"""
