"""The order saga's part of the tour: a mix of orders, each saga followed to its end, a table.

Six orders go through the saga (``tasks.saga``): in stock; out of stock (so
the payment is refunded); a card gateway that times out twice, then charges;
a card declined for good; a gateway slower than the payment step's deadline
(the broker-held deadline times the saga out and the late answer is only
logged); out of stock with the refund gateway down (the compensation is
dead-lettered, the saga shows ``compensation_failed``). The demo resets the
demo warehouse's stock of ``book`` and ``lamp`` first, and leaves the refund
outage on for ``saga retry`` to show.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from config import app
from config.app import platform_config
from tasks.demo.report import flower_url
from tasks.saga.inventory import restock
from tasks.saga.orders import place_order
from tasks.saga.payments import set_outage
from workers.delivery.idempotency import open_store
from workers.ops.sagas import load_view

#: The card whose refunds fail in the demo.
BROKEN_REFUNDS = "broken-refunds"
#: Seconds between two looks at the sagas.
POLL_INTERVAL = 0.5

Out = Callable[[str], None]


@dataclass(frozen=True)
class SagaCase:
    """One order of the tour and what it shows."""

    name: str
    sku: str
    card: str
    expected: str


#: The tour's orders, in the order they are placed.
CASES = (
    SagaCase("in stock", "book", "visa", "confirmed"),
    SagaCase("out of stock", "lamp", "visa", "cancelled after compensation"),
    SagaCase("gateway times out, then recovers", "book", "flaky", "confirmed"),
    SagaCase("card declined for good", "book", "declined", "cancelled on payment"),
    SagaCase("gateway misses the step's deadline", "book", "slow", "timed out"),
    SagaCase("refund gateway down", "lamp", BROKEN_REFUNDS, "dead-lettered"),
)


def outcome(state: str, moves: list[tuple[str | None, str, str]]) -> str:
    """How a saga ended, in the table's words, from its state and its moves ``(from, to, event type)``."""
    reached = {to for _, to, _ in moves}
    if state == "compensation_failed":
        return "dead-lettered"
    if state == "confirmed":
        return "confirmed"
    if state == "cancelled" and "timed_out" in reached:
        return "timed out"
    if state == "cancelled" and "refunding" in reached:
        return "cancelled after compensation"
    if state == "cancelled":
        return "cancelled on payment"
    return f"still {state}"


def run_saga_tour(run: str, timeout: float, out: Out = print) -> bool:
    """Place the tour's orders, wait until every saga ended, print the table.

    Returns:
        Whether every saga ended as its case expects.
    """
    settings = platform_config(app).settings
    store = open_store(settings.state_url)
    restock({"book": 10, "lamp": 0})
    set_outage(BROKEN_REFUNDS, True)
    out(f'\nOrder saga: {len(CASES)} orders (step deadline {settings.saga_step_deadline:g}s; README "Sagas")')
    placed = []
    for n, case in enumerate(CASES):
        order = {
            "order_id": f"saga-{run}-{n}",
            "amount": 20.0 + n,
            "lines": [{"sku": case.sku, "quantity": 1}],
            "card": case.card,
        }
        placed.append((case, order["order_id"], place_order(order)))
    deadline = time.monotonic() + timeout
    ended: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        for _, _, saga_id in placed:
            view = load_view(store, saga_id)
            if view.saga.ended:
                moves = [(e.from_state, e.to_state, e.event_type) for e in view.log if e.kind == "move"]
                ended[saga_id] = (view.saga.state, outcome(view.saga.state, moves))
        if len(ended) == len(placed):
            break
        time.sleep(POLL_INTERVAL)
    out(f"  {'order':16}  {'case':36}  {'ended as':30}  saga id")
    for case, order_id, saga_id in placed:
        shown = ended.get(saga_id, ("", "not ended before the timeout"))[1]
        mark = "" if shown == case.expected else f"   NOT AS EXPECTED: {case.expected}"
        out(f"  {order_id:16}  {case.name:36}  {shown:30}  {saga_id}{mark}")
    tally = Counter(shown for _, shown in ended.values())
    kinds = (
        "confirmed",
        "cancelled after compensation",
        "cancelled on payment",
        "timed out",
        "dead-lettered",
    )
    out("  " + ", ".join(f"{kind}: {tally.get(kind, 0)}" for kind in kinds))
    flower = flower_url(settings)
    out(f"  In Flower: {flower}/sagas lists them by state; {flower}/sagas/<saga id> shows a timeline")
    out(
        f"  (the dead-lettered refund: {flower}/dlq/payments.events). Or: celery -A config saga show <saga id>;"
    )
    out("  after the refund gateway is back, celery -A config saga retry <saga id>.")
    return all(ended.get(saga_id, ("", ""))[1] == case.expected for case, _, saga_id in placed)
