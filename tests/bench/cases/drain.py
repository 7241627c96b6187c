"""Case 1, drain: how fast a prefork -c 2 worker empties a queue of pre-enqueued no-op tasks.

The clock starts when the worker's consumer appears on the queue (a passive
declare sees its consumer count) and stops when the last task has completed
(each task appends one byte to a counter file; with late ack its ack follows
within milliseconds, and at most the prefetch window can be unacked). CPU is
user + system time of the worker's process tree in that window.
"""

from __future__ import annotations

from tests.bench.broker import QueueProbe, fresh_vhost
from tests.bench.observe import wait_for_count
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import (
    PLATFORM,
    PLATFORM_NO_EVENTS,
    PLATFORM_NO_IDEMPOTENCY,
    RAW_PREFETCH_1,
    RAW_PREFETCH_100,
    STOCK_ACKS_LATE_QUORUM,
    STOCK_DEFAULTS,
    System,
)

#: Seconds a worker may take to start consuming.
START_TIMEOUT = 60.0


def drain_once(system: System, tasks: int, run: SideRun) -> dict[str, float]:
    """Fill a fresh vhost with ``tasks`` no-op tasks and time one worker draining them."""
    folder = run.folder
    with fresh_vhost() as vhost:
        env = system.environment(vhost, folder, **run.profile_environment())
        system.declare(vhost, env)
        system.fill(vhost, "bench.noop", ([] for _ in range(tasks)))
        with QueueProbe(vhost) as probe, system.worker(env, folder, graceful=run.profile) as worker:
            started = probe.wait_for_consumer(system.queue, START_TIMEOUT, worker.alive)
            cpu_before = worker.cpu_seconds()
            finished = wait_for_count(folder / "counter", tasks, 60 + tasks / 50, worker.alive)
            cpu_after = worker.cpu_seconds()
            left = probe.ready(system.queue)
        if left:
            raise RuntimeError(f"{left} messages still ready after all {tasks} tasks completed")
    elapsed = finished - started
    return {
        "throughput": tasks / elapsed,
        "seconds": elapsed,
        "cpu_per_1000": (cpu_after - cpu_before) / tasks * 1000,
    }


def drain_side(system: System) -> Side:
    """A side that drains ``sizes.drain_tasks`` with ``system``."""

    def measure(run: SideRun) -> dict[str, float]:
        return drain_once(system, run.sizes.drain_tasks, run)

    return Side(system.name, system.description, measure)


THROUGHPUT = Metric("throughput", "tasks/s", higher_is_better=True)
CPU = Metric("cpu_per_1000", "CPU s / 1000 tasks", higher_is_better=False)


def case(sizes: Sizes) -> Case:
    systems = [PLATFORM, STOCK_DEFAULTS, STOCK_ACKS_LATE_QUORUM, RAW_PREFETCH_100]
    explainers = [PLATFORM_NO_IDEMPOTENCY, PLATFORM_NO_EVENTS, RAW_PREFETCH_1] if sizes.explainers else []
    names = {s.name for s in systems + explainers}
    return Case(
        name="drain",
        title=f"drain {sizes.drain_tasks:,} pre-enqueued no-op tasks (prefork -c 2)",
        sides=[drain_side(s) for s in systems + explainers],
        metrics=[THROUGHPUT, CPU, Metric("seconds", "s", higher_is_better=False)],
        ratios=[
            ratio
            for ratio in [
                Ratio("throughput", "platform", "stock-late-quorum", 0.9, ">=", "must"),
                Ratio("throughput", "platform", "stock-defaults", 1.0, ">=", "aim"),
                Ratio("throughput", "platform-no-idem", "stock-late-quorum"),
                Ratio("throughput", "platform", "platform-no-idem"),
                Ratio("throughput", "platform", "platform-no-events"),
                Ratio("throughput", "platform-no-events", "stock-late-quorum"),
                Ratio("throughput", "platform", "raw-p100"),
                Ratio("throughput", "platform", "raw-p1"),
                Ratio("cpu_per_1000", "platform", "stock-late-quorum"),
            ]
            if ratio.numerator in names and ratio.denominator in names
        ],
        notes=[
            "stock-late-quorum binds its quorum queue to a topic exchange: Celery 5.7's native "
            "delayed delivery (switched on by any quorum queue) can't bind a direct exchange.",
            "platform-no-idem (PLATFORM_IDEMPOTENCY=false) is measured in every full run, so the cost "
            "of the SQLite completion mark shows; platform-no-events likewise for task events (a bench-only "
            "switch); --quick leaves these and raw-p1 out.",
            "raw-p100 / raw-p1 are the broker's limit: a py-amqp loop that only acks.",
        ],
        profile_side="platform",
    )
