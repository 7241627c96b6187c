"""Place orders and time how they end (``python -m tests.bench.tools.saga_driver MODE ORDERS ONE_BY_ONE``).

``MODE`` is ``saga`` (``tasks.saga.orders.place_order``: the order row, the
saga, ``order.created`` and its deadlines in one transaction, then relayed) or
``chain`` (one confirmed ``tasks.events.publish("order.created", ...)`` for the
bare chain of ``tests/bench/apps/chain_tasks.py``). The services' workers must
already consume. Two phases:

1. latency: ``ONE_BY_ONE`` orders, each placed only after the one before has
   ended; latency = placing it -> its end seen (saga: the saga's state is
   ``confirmed`` in the state store; chain: the completion counter grew),
   polled every :data:`POLL` s on both sides;
2. throughput: ``ORDERS`` orders placed one after another as fast as this
   process can, the clock from the first placement to the last end seen.

Prints one JSON line: ``throughput`` (orders ended per second), ``latency_p50``
/ ``latency_p95`` / ``latency_max`` (ms) and ``place_seconds`` (phase 2's
placing alone).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from config import app
from config.app import platform_config
from tests.bench import stats
from tests.bench.apps.marks import COUNTER_VARIABLE
from tests.bench.observe import count as count_marks
from tests.support.sagas import order
from workers.delivery.idempotency import open_store

#: Seconds between two looks at whether an order has ended (both modes alike).
POLL = 0.005
#: Seconds one order (phase 1) or all of phase 2 may take per order at least.
TIMEOUT = 60.0


def confirmed_sagas() -> Callable[[], int]:
    """Counts the confirmed sagas in the state store."""
    store = open_store(platform_config(app).settings.state_url)

    def count() -> int:
        with store.transaction() as connection:
            try:
                row = connection.execute(
                    "SELECT COUNT(*) FROM saga_instances WHERE state = 'confirmed'"
                ).fetchone()
            except Exception:  # noqa: BLE001 - the table appears with the first saga
                return 0
        return int(row[0])

    return count


def placer(mode: str) -> Callable[[int], object]:
    """Places order ``n`` (``saga``: a new saga; ``chain``: a plain ``order.created``)."""
    if mode == "saga":
        from tasks.saga.inventory import restock
        from tasks.saga.orders import place_order

        restock({"book": 1_000_000})
        return lambda n: place_order(order(n), app=app)
    from tasks.events import publish

    return lambda n: publish("order.created", order(n), source="/shop/orders")


def ended_counter(mode: str) -> Callable[[], int]:
    """How many orders have ended so far."""
    if mode == "saga":
        return confirmed_sagas()
    import os

    path = Path(os.environ[COUNTER_VARIABLE])
    return lambda: count_marks(path)


def wait_until(ended: Callable[[], int], expected: int, timeout: float) -> float:
    """Poll until ``ended()`` reaches ``expected``; when (``perf_counter``).

    Raises:
        TimeoutError: not within ``timeout`` seconds; says how far it got.
    """
    deadline = time.perf_counter() + timeout
    while True:
        now = time.perf_counter()
        found = ended()
        if found >= expected:
            return now
        if now > deadline:
            raise TimeoutError(f"{found} of {expected} orders ended after {timeout:.0f}s")
        time.sleep(POLL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("saga", "chain"))
    parser.add_argument("orders", type=int)
    parser.add_argument("one_by_one", type=int)
    options = parser.parse_args()
    place, ended = placer(options.mode), ended_counter(options.mode)
    latencies = []
    for n in range(options.one_by_one):
        began = time.perf_counter()
        place(n)
        latencies.append((wait_until(ended, n + 1, TIMEOUT) - began) * 1000.0)
    base = options.one_by_one
    began = time.perf_counter()
    for n in range(base, base + options.orders):
        place(n)
    placed = time.perf_counter() - began
    finished = wait_until(ended, base + options.orders, TIMEOUT + options.orders)
    latencies.sort()
    print(
        json.dumps(
            {
                "throughput": options.orders / (finished - began),
                "latency_p50": stats.percentile(latencies, 0.5),
                "latency_p95": stats.percentile(latencies, 0.95),
                "latency_max": latencies[-1],
                "place_seconds": placed,
            }
        )
    )


if __name__ == "__main__":
    main()
