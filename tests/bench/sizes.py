"""How big each case runs: the full suite and ``--quick``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Workload sizes of every case."""

    #: Pre-enqueued no-op tasks a worker drains.
    drain_tasks: int = 20_000
    #: Pre-enqueued tasks with a 5 ms body a worker drains.
    drain_body_tasks: int = 2_000
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
    #: Tasks each publish-rate side of the delays case sends one at a time, then in one batch.
    delay_publish_one: int = 5_000
    delay_publish_batch: int = 20_000
    #: Countdown of the delayed publish-rate side, in seconds.
    delay_publish_countdown: float = 60.0
    #: Delayed tasks per second of the lateness side, and for how many seconds.
    delay_rate: int = 500
    delay_seconds: float = 5.0
    #: Range of the lateness side's countdowns (uniform), in seconds.
    delay_range: tuple[float, float] = (0.05, 4.0)
    #: Publisher processes sharing the lateness side's rate.
    delay_publishers: int = 3
    #: Delayed messages waiting in the broker while the platform worker's memory is read.
    delay_parked: int = 100_000
    #: Also measure stock Celery's countdown on a classic queue (informational; full runs).
    delay_stock: bool = True
    #: Delayed messages the stock worker holds (it stops taking them near 3,000 here).
    delay_stock_parked: int = 2_000
    #: Countdown tasks per second the stock publisher sends.
    delay_stock_rate: int = 400
    #: Longest wait for the stock worker to take its parked messages, in seconds.
    delay_stock_hold_timeout: float = 30.0
    #: Seconds a worker runs with its parked messages before memory is read again.
    delay_settle: float = 3.0
    #: Tasks of the autoscale case's burst.
    autoscale_tasks: int = 20_000
    #: Seconds each of them sleeps (a stand-in for I/O: a no-op burst is CPU-bound on 2 cores).
    autoscale_body: float = 0.005
    #: Most workers of the autoscaled side, and the workers of the fixed-max side.
    autoscale_max: int = 4
    #: Orders placed at once by the saga case's throughput phase (each one saga).
    saga_orders: int = 1_000
    #: Orders placed one at a time (each waits for the last to end) by its latency phase.
    saga_latency_orders: int = 50
    #: No-op tasks each drain side of the cluster case empties (one node, the 3-node cluster).
    cluster_drain_tasks: int = 10_000
    #: Tasks per second published while the cluster case kills the queue's leader.
    cluster_kill_rate: int = 50
    #: Seconds of that flow before the kill.
    cluster_kill_warmup: float = 5.0
    #: Default rounds per case (at least 3 for a measurement; ``--quick`` runs one).
    rounds: int = 3
    #: Also measure sides that only explain a cost (no idempotency, no events, raw prefetch 1).
    explainers: bool = True
    #: Profile a platform side when a case misses a must target.
    profile: bool = True


#: The full suite (issue 6 sizes).
FULL = Sizes()

#: ``--quick``: every case at a tiny size; the whole suite in under 2 minutes (the cases with
#: ``Case.quick`` False, autoscale, saga and cluster, only when ``--cases`` names them).
QUICK = Sizes(
    drain_tasks=300,
    drain_body_tasks=60,
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
    delay_publish_one=30,
    delay_publish_batch=100,
    delay_seconds=0.2,
    delay_range=(0.05, 0.2),
    delay_publishers=1,
    delay_parked=1_000,
    delay_stock=False,
    delay_stock_parked=100,
    delay_stock_hold_timeout=3.0,
    delay_settle=0.2,
    autoscale_tasks=2_000,
    saga_orders=30,
    saga_latency_orders=5,
    cluster_drain_tasks=500,
    cluster_kill_warmup=2.0,
    explainers=False,
    profile=False,
    # one round: --quick checks that every case runs and reports, never how fast (make test)
    rounds=1,
)
