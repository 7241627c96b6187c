"""Case 11, saga: order sagas per second, and the latency the saga runtime adds (issue 13).

Both sides run the order saga's happy path over the same three services'
queues (``payments.events``, ``inventory.events``, ``orders.events``, plus the
deadlines' work queue ``orders``), consumed by one platform worker as the saga
tests start it (``-Q`` all four, prefork ``-c 2``), in a fresh vhost with a
fresh SQLite state store:

- ``saga``: the order saga (``tasks/saga``): each hop is a service's local
  transaction with its table, the saga's move and log row, the outbox row and
  the completion mark, relayed after commit; placing an order also schedules
  the step's deadline in the broker's delay levels (a step deadline of
  :data:`STEP_DEADLINE` s, so none fires during the run);
- ``chain``: the bare event chain (``apps/chain_tasks.py``): the same three
  hops as plain platform event handlers, each publishing the next fact with
  one confirm; no log, no outbox, no deadlines, no service tables.

A fresh driver process (``tools/saga_driver.py``) places orders one at a time
for the latency (each after the one before ended) and then a batch as fast as
it can for the throughput (see the tool's docstring for the clocks).
"""

from __future__ import annotations

from tests.bench.broker import QueueProbe, fresh_vhost
from tests.bench.processes import ROOT, BenchProcess, celery_worker_command, run_tool
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import PLATFORM
from tests.support.sagas import SAGA_QUEUES, saga_environment

#: Seconds of each saga step's deadline: longer than any run, so no deadline fires.
STEP_DEADLINE = 600.0
#: Seconds the worker may take to start consuming.
START_TIMEOUT = 60.0
#: Subscriptions of each side (the services, their queues and handlers).
SUBSCRIPTIONS = {
    "saga": ROOT / "tests" / "bench" / "apps" / "saga_subscriptions.toml",
    "chain": ROOT / "tests" / "bench" / "apps" / "chain_subscriptions.toml",
}


def saga_once(run: SideRun, mode: str) -> dict[str, float]:
    """Start the services' worker for ``mode``, run the driver, stop the worker."""
    sizes = run.sizes
    with fresh_vhost() as vhost:
        env = saga_environment(
            PLATFORM.environment(vhost, run.folder, **run.profile_environment()),
            STEP_DEADLINE,
            PLATFORM_SUBSCRIPTIONS_FILE=str(SUBSCRIPTIONS[mode]),
            PLATFORM_QUEUES="orders",
        )
        PLATFORM.declare(vhost, env)
        worker = BenchProcess(
            celery_worker_command("config", SAGA_QUEUES, f"saga-{mode}"),
            env,
            run.folder,
            name=f"{mode}-worker",
            graceful=True,
        )
        with QueueProbe(vhost) as probe, worker:
            for queue in SAGA_QUEUES.split(","):
                probe.wait_for_consumer(queue, START_TIMEOUT, worker.alive)
            orders, one_by_one = sizes.saga_orders, sizes.saga_latency_orders
            result = run_tool(
                "saga_driver",
                env,
                [mode, str(orders), str(one_by_one)],
                run.folder,
                120 + (orders + one_by_one) * 2,
            )
    return {name: float(value) for name, value in result.items()}


def side(mode: str, description: str) -> Side:
    def measure(run: SideRun) -> dict[str, float]:
        return saga_once(run, mode)

    return Side(mode, description, measure)


def case(sizes: Sizes) -> Case:
    return Case(
        name="saga",
        title=f"order sagas: {sizes.saga_orders:,} placed at once (throughput) and "
        f"{sizes.saga_latency_orders:,} one at a time (latency), vs the bare event chain",
        sides=[
            side("saga", "the order saga (log, outbox, deadlines, service tables), 3 hops"),
            side("chain", "the same 3 hops as plain event handlers, one confirmed publish each"),
        ],
        metrics=[
            Metric("throughput", "orders/s", higher_is_better=True),
            Metric("latency_p50", "ms", higher_is_better=False),
            Metric("latency_p95", "ms", higher_is_better=False),
            Metric("latency_max", "ms", higher_is_better=False),
            Metric("place_seconds", "s", higher_is_better=False),
        ],
        ratios=[
            Ratio("throughput", "saga", "chain", 0.33, ">=", "must"),
            Ratio("latency_p50", "saga", "chain", 2.0, "<=", "must"),
            Ratio("latency_p95", "saga", "chain"),
        ],
        notes=[
            "one worker (-Q payments.events,inventory.events,orders.events,orders, prefork -c 2) runs the "
            "three services on both sides, as the saga tests start it",
            "latency: placing an order -> its end seen by the driver (saga: state confirmed in the state "
            "store; chain: the last handler's completion mark), polled every 5 ms on both sides",
            "throughput: orders ended per second, from the first of the batch placed to the last ended; "
            "placing is part of it (saga: a transaction and a relay per order; chain: a confirmed publish)",
            f"saga steps get a {STEP_DEADLINE:g} s deadline so none fires; each step still schedules its "
            "deadline in the broker's delay levels",
            "not part of --quick runs unless named in --cases (make test's quick suite leaves it out)",
        ],
        quick=False,
    )
