"""What must hold once every order saga has ended (read from the services' tables and the saga log).

:func:`check` returns the list of violations (empty: all hold):

1. every saga ended: ``confirmed``, ``cancelled`` or ``compensation_failed``
   (or ``resolved`` by an operator);
2. no money kept for a cancelled order (charged - refunded == 0);
3. no stock reserved for an order that is not confirmed;
4. the sum of charges minus refunds equals the total of confirmed orders
   (sagas in ``compensation_failed`` or ``resolved`` are left out: their
   money is what the dead letter or the operator says);
5. each transition appears once in the log, and the moves chain
   (each starts where the previous one ended, and end at the saga's state);
6. an order's status agrees with its saga's state.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from workers.sagas import store
from workers.sagas.definition import COMPENSATION_FAILED, RESOLVED

#: States a saga may end in.
ENDINGS = frozenset({"confirmed", "cancelled", COMPENSATION_FAILED, RESOLVED})
#: Money is compared to this precision.
CENTS = 0.005


def check(connection: Any, p: str) -> list[str]:
    """Every violated invariant, one line each."""
    problems: list[str] = []
    sagas = {saga.saga_id: saga for saga in store.listing(connection, p, limit=10**9)}
    orders = {
        str(row[1]): (str(row[0]), float(row[2]), str(row[3]))
        for row in connection.execute("SELECT order_id, saga_id, amount, status FROM saga_orders").fetchall()
    }
    money: dict[str, tuple[float, float]] = {}
    try:
        for order_id, charged, refunded in connection.execute(
            "SELECT order_id, charged, refunded FROM saga_payments"
        ).fetchall():
            money[str(order_id)] = (float(charged), float(refunded))
    except Exception:  # noqa: BLE001 - no payment was ever made: the table does not exist yet
        pass
    reserved: Counter[str] = Counter()
    try:
        for order_id, quantity in connection.execute(
            "SELECT order_id, quantity FROM saga_reservations WHERE status = 'reserved'"
        ).fetchall():
            reserved[str(order_id)] += int(quantity)
    except Exception:  # noqa: BLE001 - nothing was ever reserved
        pass
    kept, confirmed_total = 0.0, 0.0
    for saga_id, saga in sagas.items():
        order_id, amount, status = orders.get(saga_id, ("?", 0.0, "missing"))
        if saga.state not in ENDINGS:
            problems.append(f"saga {saga_id} (order {order_id}) has not ended: {saga.state}")
        charged, refunded = money.get(order_id, (0.0, 0.0))
        if saga.state in (COMPENSATION_FAILED, RESOLVED):
            continue
        kept += charged - refunded
        if saga.state == "confirmed":
            confirmed_total += amount
            if status != "confirmed":
                problems.append(f"saga {saga_id} is confirmed but order {order_id} is {status}")
        elif status == "confirmed":
            problems.append(f"order {order_id} is confirmed but its saga {saga_id} is {saga.state}")
        if saga.state == "cancelled" and abs(charged - refunded) > CENTS:
            problems.append(f"cancelled order {order_id} keeps {charged - refunded:.2f} (saga {saga_id})")
        if saga.state != "confirmed" and reserved[order_id]:
            problems.append(f"order {order_id} ({saga.state}) holds {reserved[order_id]} reserved items")
    if abs(kept - confirmed_total) > CENTS * max(1, len(sagas)):
        problems.append(f"charges - refunds = {kept:.2f} but confirmed orders total {confirmed_total:.2f}")
    problems.extend(log_problems(connection, p, sagas))
    return problems


def log_problems(connection: Any, p: str, sagas: dict[str, store.SagaInstance]) -> list[str]:
    """Transitions logged twice, or moves that do not chain up to the saga's state."""
    problems = []
    for saga_id, saga in sagas.items():
        moves = [entry for entry in store.history(connection, p, saga_id) if entry.kind == store.MOVE]
        seen = Counter(
            (entry.from_state, entry.to_state) for entry in moves if entry.from_state != entry.to_state
        )
        twice = [f"{a}->{b}" for (a, b), n in seen.items() if n > 1]
        if twice:
            problems.append(f"saga {saga_id}: transitions logged more than once: {', '.join(twice)}")
        state = None
        for entry in moves:
            if entry.from_state != state:
                problems.append(f"saga {saga_id}: move {entry.seq} starts at {entry.from_state}, not {state}")
            state = entry.to_state
        if state != saga.state:
            problems.append(f"saga {saga_id}: the log ends at {state} but the saga is {saga.state}")
    return problems
