"""Case 3, latency: enqueue-to-start p50/p95/p99 at a steady publish rate.

A fresh worker consumes while a fresh publisher process sends
``bench.stamp(time.time())`` at a steady rate through the system's own API
(``apply_async`` with the platform's confirms; stock Celery acks_late on a
quorum queue); each task writes its start time next to the send time it
carries. A few warm-up messages run first and are not counted.
"""

from __future__ import annotations

from tests.bench import stats
from tests.bench.broker import QueueProbe, fresh_vhost
from tests.bench.observe import latencies_ms, stamp_lines
from tests.bench.processes import run_tool
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import PLATFORM, PLATFORM_SOLO, STOCK_ACKS_LATE_QUORUM, System
from tests.bench.tools.publisher import WARM_UP
from tests.support.wait import wait_for

#: Percentiles reported, as metric name -> fraction.
PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def latency_once(system: System, rate: int, seconds: float, run: SideRun) -> dict[str, float]:
    """Run ``system``'s worker under a steady ``rate`` for ``seconds``; latency percentiles in ms."""
    with fresh_vhost() as vhost:
        env = system.environment(vhost, run.folder, **run.profile_environment())
        system.declare(vhost, env)
        with QueueProbe(vhost) as probe, system.worker(env, run.folder, graceful=run.profile) as worker:
            probe.wait_for_consumer(system.queue, 60, worker.alive)
            kind = "stock" if system.kind == "stock" else system.kind
            result = run_tool(
                "publisher", env, ["paced", kind, str(rate), str(seconds)], run.folder, seconds + 120
            )
            expected = result["sent"] + WARM_UP
            stamps = run.folder / "stamps"
            wait_for(
                lambda: stamp_lines(stamps) >= expected or not worker.alive(),
                timeout=60,
                message=f"{expected} stamped tasks",
            )
    found = latencies_ms(stamps)
    if len(found) < result["sent"]:
        raise RuntimeError(f"only {len(found)} of {result['sent']} tasks ran")
    measured = {name: stats.percentile(found, fraction) for name, fraction in PERCENTILES.items()}
    measured["achieved_rate"] = result["sent"] / result["seconds"]
    return measured


def latency_side(system: System, rate: int) -> Side:
    def measure(run: SideRun) -> dict[str, float]:
        return latency_once(system, rate, run.sizes.latency_seconds, run)

    return Side(f"{system.name}@{rate}", f"{system.description}, {rate} tasks/s", measure)


METRICS = [Metric(name, "ms", higher_is_better=False) for name in PERCENTILES] + [
    Metric("achieved_rate", "tasks/s", higher_is_better=True)
]


def case(sizes: Sizes) -> Case:
    sides = []
    ratios = []
    for rate in sizes.latency_rates:
        sides += [
            latency_side(PLATFORM_SOLO, rate),
            latency_side(PLATFORM, rate),
            latency_side(STOCK_ACKS_LATE_QUORUM, rate),
        ]
        ratios += [
            # The default layout (solo processes) is judged; the layout of before is shown beside it.
            Ratio("p99", f"platform-solo@{rate}", f"stock-late-quorum@{rate}", 1.2, "<=", "must"),
            Ratio("p50", f"platform-solo@{rate}", f"stock-late-quorum@{rate}"),
            Ratio("p99", f"platform@{rate}", f"stock-late-quorum@{rate}"),
        ]
    return Case(
        name="latency",
        title=f"enqueue-to-start latency at {' and '.join(map(str, sizes.latency_rates))} tasks/s "
        f"for {sizes.latency_seconds:g} s",
        sides=sides,
        metrics=METRICS,
        ratios=ratios,
        profile_side=f"platform-solo@{max(sizes.latency_rates)}",
        notes=["send time is taken just before the publish call; start time is the first line of the task"],
    )
