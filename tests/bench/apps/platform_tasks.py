"""Platform tasks for the benchmarks (loaded through ``PLATFORM_TASK_MODULES``).

They run with the platform's full lifecycle: the ``bench`` queue is a quorum
queue with publisher confirms and late ack, failures go through the delay
queues, and idempotency is on unless ``PLATFORM_IDEMPOTENCY=false``. Task names
start with ``bench.`` so the platform's router sends them to queue ``bench``.
"""

from __future__ import annotations

import os
import time

from config import app
from tests.bench.apps import marks, profiling
from workers.errors import TransientError

#: Seconds a storm task waits in its delay queue before it comes back.
STORM_BACKOFF = float(os.environ.get("BENCH_STORM_BACKOFF", "60"))

#: ``off`` switches the worker's task events off, to show what they cost (a bench-only
#: switch: Flower needs them); the worker reads the value after importing this module.
EVENTS = os.environ.get("BENCH_PLATFORM_EVENTS", "on")

if EVENTS == "off":
    app.conf.worker_send_task_events = False
    app.conf.task_send_sent_event = False

profiling.install_if_asked()


@app.task(name="bench.noop")
def noop() -> None:
    """Do nothing; count the completion."""
    marks.count()


@app.task(name="bench.stamp")
def stamp(sent: float) -> None:
    """Record when this task, sent at ``sent``, started."""
    marks.stamp(sent)


@app.task(name="bench.sleep")
def sleep(seconds: float) -> None:
    """Keep a pool process busy, so a backlog stays in the queue."""
    time.sleep(seconds)


@app.task(name="bench.io")
def io(seconds: float) -> None:
    """Wait ``seconds`` (a stand-in for I/O), then count the completion."""
    time.sleep(seconds)
    marks.count()


@app.task(name="bench.storm", retry_base=STORM_BACKOFF, retry_jitter_max=0.5, max_retries=5)
def storm() -> None:
    """Always fail transiently: the message backs off in ``bench.retry.N``."""
    marks.count_failure()
    raise TransientError("bench: upstream unavailable")
