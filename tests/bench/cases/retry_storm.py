"""Case 5, retry storm: healthy throughput while many messages back off (issue 3).

Per side, one fresh worker:

1. after a few warm-up tasks, memory is read (``rss_before_mb``);
2. storm sides only: M ``bench.storm`` tasks are enqueued; each fails
   transiently once and backs off for longer than the measurement lasts. The
   platform parks them in ``bench.retry.1`` (broker-held, per-message TTL);
   stock Celery (``autoretry_for`` + ``retry_backoff`` on a classic queue)
   republishes each with a countdown to the work queue, and its worker takes
   them into memory, unacked, as it gets to them. The phase ends when all M
   attempts failed (``park_seconds``; ``queued_after_park`` says how many
   countdown copies still wait in the work queue, ahead of the healthy tasks);
3. H healthy no-op tasks are enqueued and timed until all completed
   (``throughput``; if a phase deadline passes, the tasks done so far count);
4. memory is read again (``rss_after_mb``).

Clean sides skip step 2; storm / clean throughput is the case's ratio.
"""

from __future__ import annotations

import statistics
import time

from tests.bench.broker import QueueProbe, fresh_vhost
from tests.bench.observe import count, wait_for_count
from tests.bench.processes import BenchProcess
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import PLATFORM, STOCK_ACKS_LATE_CLASSIC, System

#: No-op tasks run before the first memory reading.
WARM_UP = 20
#: Storm messages of a profiling run.
PROFILE_FAILURES = 2_000


def rss_mb(worker: BenchProcess, readings: int = 3) -> float:
    values = []
    for _ in range(readings):
        values.append(worker.rss_bytes())
        time.sleep(0.05)
    return statistics.median(values) / 1e6


def storm_once(system: System, storm: bool, run: SideRun) -> dict[str, float]:
    """One worker's healthy throughput, with or without a storm parked first."""
    sizes = run.sizes
    # Under the profiler (and tracemalloc) everything is slower; give the phases room.
    phase_timeout = sizes.storm_phase_timeout * (5 if run.profile else 1)
    # Growth per failure is linear, and tracemalloc slows every allocation: a profile
    # run parks at most PROFILE_FAILURES messages.
    failures = min(sizes.storm_failures, PROFILE_FAILURES) if run.profile else sizes.storm_failures
    measured: dict[str, float] = {}
    with fresh_vhost() as vhost:
        env = system.environment(
            vhost, run.folder, BENCH_STORM_BACKOFF=str(sizes.storm_backoff), **run.profile_environment()
        )
        system.declare(vhost, env)
        with QueueProbe(vhost) as probe, system.worker(env, run.folder, graceful=run.profile) as worker:
            probe.wait_for_consumer(system.queue, 60, worker.alive)
            # Warm the pool processes up (imports, the idempotency store) on both sides alike.
            system.fill(vhost, "bench.noop", ([] for _ in range(WARM_UP)))
            wait_for_count(run.folder / "counter", WARM_UP, 60, worker.alive)
            measured["rss_before_mb"] = rss_mb(worker)
            if storm:
                started = time.perf_counter()
                system.fill(vhost, "bench.storm", ([] for _ in range(failures)))
                # Parking costs a confirmed republish per message: allow at least 50 a second.
                park_timeout = max(phase_timeout, failures / 50)
                wait_for_count(run.folder / "failures", failures, park_timeout, worker.alive)
                measured["park_seconds"] = time.perf_counter() - started
                measured["queued_after_park"] = float(probe.ready(system.queue))
            healthy = sizes.storm_healthy
            started = time.perf_counter()
            system.fill(vhost, "bench.noop", ([] for _ in range(healthy)))
            try:
                finished = wait_for_count(
                    run.folder / "counter", WARM_UP + healthy, phase_timeout, worker.alive
                )
                done = healthy
            except TimeoutError:
                if not worker.alive():
                    raise
                finished, done = time.perf_counter(), count(run.folder / "counter") - WARM_UP
            measured["throughput"] = done / (finished - started)
            measured["healthy_done"] = done / healthy
            measured["rss_after_mb"] = rss_mb(worker)
            if storm and system.kind == "platform":
                measured["parked_in_broker"] = float(probe.ready("bench.retry.1"))
    return measured


def storm_side(system: System, storm: bool) -> Side:
    label = "storm" if storm else "clean"

    def measure(run: SideRun) -> dict[str, float]:
        return storm_once(system, storm, run)

    what = "with M messages backing off" if storm else "no failures"
    return Side(f"{system.name}-{label}", f"{system.description}, {what}", measure)


def case(sizes: Sizes) -> Case:
    return Case(
        name="retry_storm",
        title=f"healthy throughput ({sizes.storm_healthy:,} no-op tasks) while "
        f"{sizes.storm_failures:,} messages back off",
        sides=[
            storm_side(PLATFORM, storm=False),
            storm_side(PLATFORM, storm=True),
            storm_side(STOCK_ACKS_LATE_CLASSIC, storm=False),
            storm_side(STOCK_ACKS_LATE_CLASSIC, storm=True),
        ],
        metrics=[
            Metric("throughput", "tasks/s", higher_is_better=True),
            Metric("healthy_done", "fraction", higher_is_better=True),
            Metric("rss_before_mb", "MB", higher_is_better=False),
            Metric("rss_after_mb", "MB", higher_is_better=False),
            Metric("park_seconds", "s", higher_is_better=False),
            Metric("parked_in_broker", "messages", higher_is_better=True),
            Metric("queued_after_park", "messages", higher_is_better=False),
        ],
        ratios=[
            Ratio("throughput", "platform-storm", "platform-clean", 0.8, ">=", "must"),
            Ratio("throughput", "stock-late-classic-storm", "stock-late-classic-clean"),
            Ratio(
                "rss_after_mb",
                "platform-storm",
                "platform-storm",
                1.10,
                "<=",
                "must",
                denominator_metric="rss_before_mb",
            ),  # fmt: skip
            Ratio(
                "rss_after_mb",
                "stock-late-classic-storm",
                "stock-late-classic-storm",
                denominator_metric="rss_before_mb",
            ),  # fmt: skip
            Ratio("throughput", "platform-storm", "stock-late-classic-storm"),
        ],
        profile_side="platform-storm",
        profile_memory=True,
        notes=[
            f"storm messages back off {sizes.storm_backoff:g}s, longer than the measurement, so they "
            "stay parked while the healthy tasks run (stock: retry_backoff with retry_jitter=False)",
            f"a phase that passes its {sizes.storm_phase_timeout:g}s deadline counts the tasks done so far "
            "(healthy_done < 1)",
        ],
    )
