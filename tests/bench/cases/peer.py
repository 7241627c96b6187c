"""Case 6, peer: the platform against Dramatiq on the same RabbitMQ (drain and latency).

Dramatiq runs through its own CLI with ``--processes 2 --threads 1``: two OS
processes each running one message at a time, the same execution slots as
Celery's prefork ``-c 2`` (Dramatiq's threads share a GIL, so ``1 x 2`` would
give it one core for CPU work where the platform gets two). Its
``RabbitmqBroker`` keeps its defaults: acks after the actor returns, classic
queues with a dead-letter ``.XQ`` queue, prefetch 2 per process.
"""

from __future__ import annotations

from tests.bench.cases.drain import drain_side
from tests.bench.cases.latency import PERCENTILES, latency_side
from tests.bench.runner import Case, Metric, Ratio
from tests.bench.sizes import Sizes
from tests.bench.systems import DRAMATIQ, PLATFORM


def case(sizes: Sizes) -> Case:
    rate = max(sizes.latency_rates)
    sides = [drain_side(PLATFORM), drain_side(DRAMATIQ)]
    sides += [latency_side(PLATFORM, rate), latency_side(DRAMATIQ, rate)]
    return Case(
        name="peer",
        title=f"platform vs Dramatiq: drain {sizes.drain_tasks:,} tasks; latency at {rate} tasks/s",
        sides=sides,
        metrics=[
            Metric("throughput", "tasks/s", higher_is_better=True),
            Metric("cpu_per_1000", "CPU s / 1000 tasks", higher_is_better=False),
            *(Metric(name, "ms", higher_is_better=False) for name in PERCENTILES),
        ],
        ratios=[
            Ratio("throughput", "platform", "dramatiq"),
            Ratio("cpu_per_1000", "platform", "dramatiq"),
            Ratio("p99", f"platform@{rate}", f"dramatiq@{rate}"),
            Ratio("p50", f"platform@{rate}", f"dramatiq@{rate}"),
        ],
        notes=["no target: the peer is context, not a gate"],
    )
