"""How big each case runs: the full suite and ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Workload sizes of every case."""

    #: Pre-enqueued no-op tasks a worker drains.
    drain_tasks: int = 20_000
    #: Tasks each publisher enqueues.
    enqueue_tasks: int = 20_000
    #: Steady publish rates of the latency case, tasks per second.
    latency_rates: tuple[int, ...] = (50, 200)
    #: Seconds each steady rate lasts.
    latency_seconds: float = 10.0
    #: Messages waiting in the queue while worker memory is read.
    memory_backlogs: tuple[int, int] = (10_000, 200_000)
    #: Seconds a worker runs with its backlog before memory is read.
    memory_settle: float = 3.0
    #: Messages failing transiently during the retry storm.
    storm_failures: int = 10_000
    #: Healthy no-op tasks whose throughput the storm case measures.
    storm_healthy: int = 10_000
    #: Seconds a failed storm message backs off (longer than the measurement).
    storm_backoff: float = 180.0
    #: Longest wait for one phase of the storm case, in seconds.
    storm_phase_timeout: float = 60.0
    #: Dead letters each side of the replay case moves back to their queue.
    replay_letters: int = 10_000
    #: Events the batch and raw sides of the fan-out case publish (each to 3 queues).
    fan_out_events: int = 20_000
    #: Events the one-at-a-time side of the fan-out case publishes.
    fan_out_one_events: int = 2_000
    #: Default rounds per case (at least 3).
    rounds: int = 3
    #: Also measure sides that only explain a cost (no idempotency, no events, raw prefetch 1).
    explainers: bool = True
    #: Profile a platform side when a case misses a must target.
    profile: bool = True


#: The full suite (issue 6 sizes).
FULL = Sizes()

#: ``--quick``: every case at a tiny size; the whole suite in under 2 minutes.
QUICK = Sizes(
    drain_tasks=300,
    enqueue_tasks=300,
    latency_rates=(200,),
    latency_seconds=1.0,
    memory_backlogs=(100, 1_000),
    memory_settle=0.3,
    storm_failures=100,
    storm_healthy=200,
    storm_backoff=30.0,
    storm_phase_timeout=2.0,
    replay_letters=200,
    fan_out_events=300,
    fan_out_one_events=100,
    explainers=False,
    profile=False,
)
