"""Case 4, memory: worker resident memory with a small and a large backlog waiting.

The queue is filled with ``bench.sleep`` tasks before the worker starts; the
tasks keep both pool processes busy, so the backlog stays in the queue while
the resident memory (RSS) of the worker's main and pool processes is read
(median of several readings after a settle time). A worker whose memory grows
with the backlog is holding messages it has not started.
"""

from __future__ import annotations

import statistics
import time

from tests.bench.broker import QueueProbe, fresh_vhost
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import PLATFORM, STOCK_DEFAULTS, System

#: Seconds each waiting task sleeps in the worker.
TASK_SECONDS = 0.5
#: RSS readings per measurement, and the pause between them.
READINGS, READING_PAUSE = 5, 0.1


def memory_once(system: System, backlog: int, run: SideRun) -> dict[str, float]:
    """RSS (MB) of ``system``'s worker with ``backlog`` messages waiting."""
    with fresh_vhost() as vhost:
        env = system.environment(vhost, run.folder, **run.profile_environment())
        system.declare(vhost, env)
        system.fill(vhost, "bench.sleep", ([TASK_SECONDS] for _ in range(backlog)))
        with QueueProbe(vhost) as probe, system.worker(env, run.folder, graceful=run.profile) as worker:
            probe.wait_for_consumer(system.queue, 60, worker.alive)
            time.sleep(run.sizes.memory_settle)  # the worker takes its prefetch and settles
            readings = []
            for _ in range(READINGS):
                readings.append(worker.rss_bytes())
                time.sleep(READING_PAUSE)
            waiting = probe.ready(system.queue)
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
    return {"rss_mb": statistics.median(readings) / 1e6, "waiting": float(waiting)}


def memory_side(system: System, backlog: int, label: str) -> Side:
    def measure(run: SideRun) -> dict[str, float]:
        return memory_once(system, backlog, run)

    return Side(f"{system.name}@{label}", f"{system.description}, {backlog:,} waiting", measure)


def case(sizes: Sizes) -> Case:
    small, large = sizes.memory_backlogs
    return Case(
        name="memory",
        title=f"worker RSS with {small:,} and {large:,} messages waiting",
        sides=[
            memory_side(PLATFORM, small, "small"),
            memory_side(PLATFORM, large, "large"),
            memory_side(STOCK_DEFAULTS, small, "small"),
            memory_side(STOCK_DEFAULTS, large, "large"),
        ],
        metrics=[
            Metric("rss_mb", "MB", higher_is_better=False),
            Metric("waiting", "messages", higher_is_better=True),
        ],
        ratios=[
            Ratio("rss_mb", "platform@large", "platform@small", 1.10, "<=", "must"),
            Ratio("rss_mb", "stock-defaults@large", "stock-defaults@small"),
            Ratio("rss_mb", "platform@small", "stock-defaults@small"),
        ],
        profile_side="platform@large",
        profile_memory=True,
        notes=[
            f"'small' is {small:,} and 'large' {large:,} waiting messages; each task sleeps "
            f"{TASK_SECONDS}s so the backlog stays in the queue",
        ],
    )
