"""Case 9, delays: delayed tasks held by the broker (publish rate, lateness, worker memory).

The platform sends a task with ``countdown`` / ``eta`` into its shared delay
levels (``platform.delay.0..27``, level L waits 10 ms * 2**L, see
``config/topology.py``); it reaches its work queue when due, with header
``x-delay-due-at``. Three measurements, each side in a fresh vhost:

1. **publish rate** (``platform-delayed`` vs ``platform-immediate``): a fresh
   publisher process (``tools/delay_publisher.py rate``) sends ``bench.noop``
   with ``apply_async(countdown=C)`` one at a time, then one
   ``apply_many(..., countdown=C)`` batch; the immediate side does the same
   without countdown. ``held`` checks that the delayed messages all sit in the
   delay levels (and the immediate ones in ``bench``).
2. **lateness** (``platform-lateness``): a raw consumer (``tools/arrivals.py``)
   always waits on ``bench`` and writes each message's arrival time next to its
   ``x-delay-due-at``; several publisher processes share a steady rate of
   ``apply_async(countdown=uniform(low, high))``. Lateness is arrival - due;
   ``early`` counts arrivals before the due time (must be 0). The p99 target is
   the ratio of the p99 to ``p99_budget`` (a constant the side reports).
3. **worker memory** with delayed messages waiting (before/after in one
   worker, like the retry storm): after a warm-up, RSS is read, delayed
   messages are parked with a countdown of :data:`PARK_COUNTDOWN` (nothing
   becomes due during the measurement), and RSS is read again after a settle
   time. ``platform-parked``: the messages wait in the delay levels; they are
   published with pipelined confirms straight into the level their delay
   first waits in, with the routing key and headers the platform's own
   ``delayed_destination`` gives them (what its entry exchange would route
   there; that path's rate is measurement 1). ``stock-parked``: stock Celery
   defaults (classic queue), ``apply_async(countdown=...)`` from a publisher
   process; its worker takes the messages and holds them unacked in memory.
   Deleting the vhost afterwards drops every parked message.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.bench import stats
from tests.bench.broker import QueueProbe, celery_messages, fresh_vhost, publish_pipelined
from tests.bench.cases.retry_storm import rss_mb
from tests.bench.observe import count as count_marks
from tests.bench.observe import stamp_lines, wait_for_count
from tests.bench.processes import BenchProcess, run_tool
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import PLATFORM, STOCK_DEFAULTS, System
from tests.support.broker import Vhost
from tests.support.wait import wait_for

#: Lateness percentiles reported, as metric name -> fraction.
PERCENTILES = {"late_p50": 0.50, "late_p95": 0.95, "late_p99": 0.99}
#: The lateness p99 the platform must stay under, in milliseconds.
P99_BUDGET_MS = 250.0
#: Countdown of the memory sides, in seconds: nothing becomes due while memory is read.
PARK_COUNTDOWN = 600.0
#: No-op tasks a memory side's worker runs before its first RSS reading.
WARM_UP = 10
#: Seconds the paced publishers get to start (imports, connection) before their common start.
PUBLISHER_START = 0.4


def delay_levels_depth(probe: QueueProbe) -> int:
    """Messages waiting in all delay levels."""
    from config.topology import DELAY_LEVELS, delay_level

    return sum(probe.ready(delay_level(level)) for level in range(DELAY_LEVELS))


# -- 1. publish rate -------------------------------------------------------------------------


def rate_side(name: str, description: str, countdown: float) -> Side:
    """``apply_async`` one at a time, then ``apply_many``, with ``countdown`` (0: none)."""

    def measure(run: SideRun) -> dict[str, float]:
        one, batch = run.sizes.delay_publish_one, run.sizes.delay_publish_batch
        with fresh_vhost() as vhost:
            env = PLATFORM.environment(vhost, run.folder, **run.profile_environment())
            PLATFORM.declare(vhost, env)
            result = run_tool(
                "delay_publisher",
                env,
                ["rate", str(countdown), str(one), str(batch)],
                run.folder,
                120 + (one + batch) / 50,
            )
            with QueueProbe(vhost) as probe:
                held = delay_levels_depth(probe) if countdown > 0 else probe.ready(PLATFORM.queue)
        return {
            "throughput_one": result["one"],
            "throughput_batch": result["batch"],
            "held": held / result["sent"],
        }

    return Side(name, description, measure)


# -- 2. lateness -----------------------------------------------------------------------------


def lateness_once(run: SideRun) -> dict[str, float]:
    """Delayed tasks at a steady rate, uniform delays; lateness of their arrival in ms."""
    sizes = run.sizes
    low, high = sizes.delay_range
    publishers = sizes.delay_publishers
    stamps = run.folder / "stamps"
    stamps.unlink(missing_ok=True)  # a folder reused from an earlier run starts empty
    with fresh_vhost() as vhost:
        env = PLATFORM.environment(vhost, run.folder, **run.profile_environment())
        PLATFORM.declare(vhost, env)
        consumer = BenchProcess(
            [sys.executable, "-m", "tests.bench.tools.arrivals", "--queue", PLATFORM.queue],
            env,
            run.folder,
            name="arrivals",
        )
        with QueueProbe(vhost) as probe, consumer:
            probe.wait_for_consumer(PLATFORM.queue, 60, consumer.alive)
            start = time.time() + PUBLISHER_START * (5 if run.profile else 1)
            arguments = [
                ["paced", str(sizes.delay_rate / publishers), str(sizes.delay_seconds), str(low), str(high)]
                + [str(run.round * publishers + index), f"{start:.6f}"]
                for index in range(publishers)
            ]
            with ThreadPoolExecutor(publishers) as pool:
                results = list(
                    pool.map(
                        lambda args: run_tool(
                            "delay_publisher", env, args, run.folder, 120 + sizes.delay_seconds
                        ),
                        arguments,
                    )
                )
            sent = sum(r["sent"] for r in results)
            expected = sent + publishers  # one immediate warm-up task each
            wait_for(
                lambda: stamp_lines(stamps) >= expected or not consumer.alive(),
                timeout=high + 60,
                message=lambda: f"{expected} arrivals (got {stamp_lines(stamps)})",
            )
            if not consumer.alive():
                raise RuntimeError(f"the arrivals consumer exited:\n{consumer.log_tail()}")
    lateness = lateness_ms(stamps)
    if len(lateness) != sent:
        raise RuntimeError(f"{len(lateness)} delayed tasks arrived with a due time, {sent} were sent")
    measured = {name: stats.percentile(lateness, fraction) for name, fraction in PERCENTILES.items()}
    early = sum(1 for value in lateness if value < 0)
    measured.update(
        late_max=lateness[-1],
        early=float(early),
        not_early=float(len(lateness) - early),
        received=float(len(lateness)),
        p99_budget=P99_BUDGET_MS,
        achieved_rate=sent / max(r["seconds"] for r in results),
        behind_ms=max(r["behind_ms"] for r in results),
    )
    return measured


def lateness_ms(path: Path) -> list[float]:
    """Arrival minus due time of every delayed message, in ms, sorted (warm-ups left out)."""
    found = []
    for line in path.read_text().splitlines():
        due, _, arrival = line.partition(" ")
        if float(due) >= 0:
            found.append((float(arrival) - float(due)) * 1000.0)
    return sorted(found)


# -- 3. worker memory ------------------------------------------------------------------------


def park_platform(vhost: Vhost, count: int, countdown: float) -> None:
    """``count`` delayed ``bench.noop`` messages, due in ``countdown`` s, into the delay levels.

    Headers and routing key are the platform's (``delayed_destination``); they
    go straight to the level the delay first waits in, which is where the entry
    exchange would route them.
    """
    from config.topology import delay_level
    from workers.delivery.delays import delay_units, levels_waited
    from workers.delivery.headers import DELAY_DUE_AT
    from workers.delivery.publishing import delayed_destination

    now = datetime.now(UTC)
    route = {"eta": (now + timedelta(seconds=countdown)).isoformat()}
    destination = delayed_destination(route, PLATFORM.queue, now)
    if destination is None:
        raise ValueError(f"a countdown of {countdown:g}s is too short to be delayed")
    first_level = levels_waited(delay_units(countdown))[0]

    def messages():
        for message in celery_messages("bench.noop", (([], {}) for _ in range(count))):
            message.properties["application_headers"][DELAY_DUE_AT] = route[DELAY_DUE_AT]
            yield message

    publish_pipelined(vhost, delay_level(first_level), destination[1], messages())


def parked_once(system: System, run: SideRun) -> dict[str, float]:
    """A worker's RSS before and after delayed messages are parked."""
    sizes = run.sizes
    count = sizes.delay_parked if system.kind == "platform" else sizes.delay_stock_parked
    (run.folder / "counter").unlink(missing_ok=True)
    with fresh_vhost() as vhost:
        env = system.environment(vhost, run.folder, **run.profile_environment())
        system.declare(vhost, env)
        with QueueProbe(vhost) as probe, system.worker(env, run.folder, graceful=run.profile) as worker:
            probe.wait_for_consumer(system.queue, 60, worker.alive)
            system.fill(vhost, "bench.noop", ([] for _ in range(WARM_UP)))
            wait_for_count(run.folder / "counter", WARM_UP, 60, worker.alive)
            before = rss_mb(worker)
            started = time.perf_counter()
            if system.kind == "platform":
                park_platform(vhost, count, PARK_COUNTDOWN)
            else:
                rate = str(sizes.delay_stock_rate)
                run_tool(
                    "delay_publisher",
                    env,
                    ["stock-park", str(count), rate, str(PARK_COUNTDOWN)],
                    run.folder,
                    120 + count / sizes.delay_stock_rate,
                )
                # The worker takes the messages into memory; ready is what it has not taken yet.
                deadline = time.perf_counter() + sizes.delay_stock_hold_timeout
                while probe.ready(system.queue) and time.perf_counter() < deadline and worker.alive():
                    time.sleep(0.05)
            park_seconds = time.perf_counter() - started
            time.sleep(sizes.delay_settle)
            after = rss_mb(worker)
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
            if system.kind == "platform":
                held = delay_levels_depth(probe)
            else:
                held = count - probe.ready(system.queue)
            ran = count_marks(run.folder / "counter") - WARM_UP
    if ran or (system.kind == "platform" and held != count):
        raise RuntimeError(f"{held} of {count} parked messages held, {ran} ran before they were due")
    return {
        "rss_before_mb": before,
        "rss_after_mb": after,
        "parked": float(held),
        "kb_per_parked": (after - before) * 1000.0 / held if held else 0.0,
        "park_seconds": park_seconds,
    }


def parked_side(system: System, name: str, where: str) -> Side:
    def measure(run: SideRun) -> dict[str, float]:
        return parked_once(system, run)

    return Side(name, f"{system.description}; delayed messages wait {where}", measure)


#: What every side may report.
METRICS = [
    Metric("throughput_one", "tasks/s", higher_is_better=True),
    Metric("throughput_batch", "tasks/s", higher_is_better=True),
    Metric("held", "fraction", higher_is_better=True),
    *(Metric(name, "ms", higher_is_better=False) for name in PERCENTILES),
    Metric("late_max", "ms", higher_is_better=False),
    Metric("p99_budget", "ms", higher_is_better=True),
    Metric("early", "messages", higher_is_better=False),
    Metric("not_early", "messages", higher_is_better=True),
    Metric("received", "messages", higher_is_better=True),
    Metric("achieved_rate", "tasks/s", higher_is_better=True),
    Metric("behind_ms", "ms", higher_is_better=False),
    Metric("rss_before_mb", "MB", higher_is_better=False),
    Metric("rss_after_mb", "MB", higher_is_better=False),
    Metric("parked", "messages", higher_is_better=True),
    Metric("kb_per_parked", "KB", higher_is_better=False),
    Metric("park_seconds", "s", higher_is_better=False),
]


def case(sizes: Sizes) -> Case:
    low, high = sizes.delay_range
    countdown = sizes.delay_publish_countdown
    one, batch = sizes.delay_publish_one, sizes.delay_publish_batch
    sides = [
        rate_side(
            "platform-delayed",
            f"platform apply_async(countdown={countdown:g}) x{one:,}, then apply_many of {batch:,} "
            "with the same countdown",
            countdown,
        ),
        rate_side(
            "platform-immediate",
            f"platform apply_async() x{one:,}, then apply_many of {batch:,}, no countdown",
            0.0,
        ),
        Side(
            "platform-lateness",
            f"{sizes.delay_publishers} publisher process(es), {sizes.delay_rate} apply_async/s in all for "
            f"{sizes.delay_seconds:g}s, countdown uniform in [{low:g}, {high:g}] s; raw consumer on bench",
            lateness_once,
        ),
        parked_side(PLATFORM, "platform-parked", f"in the delay levels ({sizes.delay_parked:,})"),
    ]
    ratios = [
        Ratio("throughput_one", "platform-delayed", "platform-immediate", 0.8, ">=", "must"),
        Ratio("throughput_batch", "platform-delayed", "platform-immediate", 0.8, ">=", "must"),
        Ratio("late_p99", "platform-lateness", "platform-lateness", 1.0, "<=", "must", "p99_budget"),
        Ratio("not_early", "platform-lateness", "platform-lateness", 1.0, ">=", "must", "received"),
        Ratio("rss_after_mb", "platform-parked", "platform-parked", 1.10, "<=", "must", "rss_before_mb"),
    ]
    notes = [
        f"lateness = arrival on bench - x-delay-due-at; late_p99 / p99_budget <= 1 means p99 <= "
        f"{P99_BUDGET_MS:g} ms; not_early / received = 1 means no message arrived before its due time",
        "held: on the delayed side the fraction of published messages waiting in the delay levels, "
        "on the immediate side in bench",
        f"memory sides park messages due in {PARK_COUNTDOWN:g}s; the platform's go straight into the "
        "delay level they first wait in, with the headers and routing key of the platform's "
        "delayed_destination (the entry exchange would route them there; that path's rate is "
        "throughput_*)",
    ]
    if sizes.delay_stock:
        sides.append(
            parked_side(
                STOCK_DEFAULTS,
                "stock-parked",
                f"in the worker, unacked ({sizes.delay_stock_parked:,}, countdown on a classic queue)",
            )
        )
        ratios.append(
            Ratio("rss_after_mb", "stock-parked", "stock-parked", denominator_metric="rss_before_mb")
        )
        notes.append(
            f"stock-parked: apply_async(countdown={PARK_COUNTDOWN:g}) at {sizes.delay_stock_rate}/s; it holds "
            f"{sizes.delay_stock_parked:,}, not {sizes.delay_parked:,}: here a stock worker stops taking "
            "countdown messages at about 3,000 held (then about 10 a second), so 100,000 would take hours; "
            "kb_per_parked is its growth per held message"
        )
    return Case(
        name="delays",
        title=(
            f"delayed tasks: publish rate (countdown={countdown:g}s), lateness at {sizes.delay_rate}/s, "
            f"worker RSS with {sizes.delay_parked:,} waiting"
        ),
        sides=sides,
        metrics=METRICS,
        ratios=ratios,
        profile_side="platform-delayed",
        notes=notes,
    )
