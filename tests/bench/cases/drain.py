"""Case 1, drain: how fast each side's worker empties a queue of pre-enqueued no-op tasks.

Sides: the platform's default layout (``platform-solo``: 2 solo worker
processes, prefetch window 2 each), the platform as it ran before the layout
setting (``platform``: one prefork -c 2 worker, prefetch 1), stock Celery's
defaults and acks_late on a quorum queue, Dramatiq, the raw broker loop; and a
5 ms task body (a sleep standing in for I/O) for the default layout and stock
acks_late, so the win is not only on no-ops.

The clock starts when the worker's consumer appears on the queue (a passive
declare sees its consumer count) and stops when the last task has completed
(each task appends one byte to a counter file; with late ack its ack follows
within milliseconds, and at most the prefetch window can be unacked). CPU is
user + system time of the worker's process tree in that window.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from tests.bench.broker import QueueProbe, fresh_vhost
from tests.bench.observe import wait_for_count
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import (
    DRAMATIQ,
    PLATFORM,
    PLATFORM_NO_EVENTS,
    PLATFORM_NO_IDEMPOTENCY,
    PLATFORM_SOLO,
    PLATFORM_SOLO_PREFETCH_1,
    PLATFORM_SOLO_PREFETCH_4,
    PLATFORM_SOLO_PREFETCH_8,
    RAW_PREFETCH_1,
    RAW_PREFETCH_100,
    STOCK_ACKS_LATE_QUORUM,
    STOCK_DEFAULTS,
    STOCK_SOLO,
    System,
)
from tests.support.broker import Vhost

#: Seconds a worker may take to start consuming.
START_TIMEOUT = 60.0


def drain_once(
    system: System,
    tasks: int,
    run: SideRun,
    task: str = "bench.noop",
    args: tuple[float, ...] = (),
    vhosts: Callable[[], AbstractContextManager[Vhost]] = fresh_vhost,
) -> dict[str, float]:
    """Fill a fresh vhost (from ``vhosts``) with ``tasks`` ``task(*args)`` messages and time one worker draining them."""
    folder = run.folder
    with vhosts() as vhost:
        env = system.environment(vhost, folder, **run.profile_environment())
        system.declare(vhost, env)
        system.fill(vhost, task, (list(args) for _ in range(tasks)))
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


#: Seconds the task body of the I/O-like sides sleeps.
BODY_SECONDS = 0.005


def body_side(system: System) -> Side:
    """A side that drains ``sizes.drain_body_tasks`` tasks whose body sleeps :data:`BODY_SECONDS`."""

    def measure(run: SideRun) -> dict[str, float]:
        return drain_once(system, run.sizes.drain_body_tasks, run, "bench.io", (BODY_SECONDS,))

    return Side(f"{system.name}-5ms", f"{system.description}; task body sleeps 5 ms", measure)


THROUGHPUT = Metric("throughput", "tasks/s", higher_is_better=True)
CPU = Metric("cpu_per_1000", "CPU s / 1000 tasks", higher_is_better=False)


def case(sizes: Sizes) -> Case:
    # --quick (inside make test) only checks that the case runs: the default layout, the layout
    # of before and stock defaults. A full run measures every side.
    systems = [PLATFORM_SOLO, PLATFORM, STOCK_DEFAULTS]
    explainers = (
        [
            PLATFORM_SOLO_PREFETCH_1,
            PLATFORM_SOLO_PREFETCH_4,
            PLATFORM_SOLO_PREFETCH_8,
            PLATFORM_NO_IDEMPOTENCY,
            PLATFORM_NO_EVENTS,
            RAW_PREFETCH_1,
            STOCK_SOLO,
        ]
        if sizes.explainers
        else []
    )
    if sizes.explainers:
        systems += [STOCK_ACKS_LATE_QUORUM, DRAMATIQ, RAW_PREFETCH_100]
    bodies = [PLATFORM_SOLO, STOCK_ACKS_LATE_QUORUM] if sizes.explainers else []
    names = {s.name for s in systems + explainers} | {f"{s.name}-5ms" for s in bodies}
    return Case(
        name="drain",
        title=f"drain {sizes.drain_tasks:,} pre-enqueued no-op tasks, and {sizes.drain_body_tasks:,} "
        "with a 5 ms body (2 task slots per side)",
        sides=[drain_side(s) for s in systems + explainers] + [body_side(s) for s in bodies],
        metrics=[THROUGHPUT, CPU, Metric("seconds", "s", higher_is_better=False)],
        ratios=[
            ratio
            for ratio in [
                # issue 16's targets, on the default layout
                Ratio("throughput", "platform-solo", "stock-defaults", 1.5, ">=", "must"),
                Ratio("cpu_per_1000", "platform-solo", "platform", 0.6, "<=", "must"),
                Ratio("throughput", "platform-solo-5ms", "stock-late-quorum-5ms", 1.0, ">=", "must"),
                Ratio("throughput", "platform-solo", "dramatiq", 0.5, ">=", "aim"),
                Ratio("cpu_per_1000", "platform-solo", "dramatiq", 1.5, "<=", "aim"),
                Ratio("throughput", "platform-solo", "stock-late-quorum"),
                Ratio("throughput", "platform-solo", "platform"),
                Ratio("throughput", "platform-solo", "platform-solo-p1"),
                # the window: how much a solo process idles waiting for the next delivery
                Ratio("throughput", "platform-solo-p4", "stock-defaults"),
                Ratio("throughput", "platform-solo-p8", "stock-defaults"),
                Ratio("cpu_per_1000", "platform-solo-p4", "platform"),
                # Celery's own machinery in the same layout: the platform's cost on top of it,
                # and how far the layout alone gets against stock defaults
                Ratio("throughput", "platform-solo", "stock-solo"),
                Ratio("cpu_per_1000", "platform-solo", "stock-solo"),
                Ratio("throughput", "stock-solo", "stock-defaults"),
                # the layout of before (prefork -c 2, prefetch 1), for comparison
                Ratio("throughput", "platform", "stock-late-quorum"),
                Ratio("throughput", "platform", "stock-defaults"),
                Ratio("throughput", "platform-no-idem", "stock-late-quorum"),
                Ratio("throughput", "platform", "platform-no-idem"),
                Ratio("throughput", "platform", "platform-no-events"),
                Ratio("throughput", "platform-solo", "raw-p100"),
                Ratio("throughput", "platform", "raw-p1"),
                Ratio("cpu_per_1000", "platform", "stock-late-quorum"),
            ]
            if ratio.numerator in names and ratio.denominator in names
        ],
        notes=[
            "platform-solo is the default layout (PLATFORM_WORKER_LAYOUT=solo: 2 solo worker processes "
            "under python -m workers.ops.worker_group, prefetch window 2 each); platform is the layout of "
            "before (one prefork -c 2 worker, prefetch 1), measured in the same run for the CPU ratio.",
            "stock-late-quorum binds its quorum queue to a topic exchange: Celery 5.7's native "
            "delayed delivery (switched on by any quorum queue) can't bind a direct exchange.",
            "platform-solo-p1/-p4/-p8 (windows of 1, 4 and 8 per solo process), platform-no-idem and "
            "platform-no-events are measured in every full run, "
            "so the cost of the window, the SQLite completion mark and task events shows; --quick "
            "leaves these, raw-p1, and every side but platform-solo, platform and stock-defaults out.",
            "raw-p100 / raw-p1 are the broker's limit: a py-amqp loop that only acks.",
            "stock-solo is stock Celery (no platform code) in the platform's default layout and window: "
            "2 solo processes, acks_late, prefetch 2 each (full runs): what Celery's own per-message "
            "machinery costs there, so platform-solo / stock-solo is the platform's share.",
        ],
        profile_side="platform-solo",
    )
