"""Publishers of the delays case (``python -m tests.bench.tools.delay_publisher``).

Each run is a fresh process with the side's environment; it prints one JSON line.

- ``rate COUNTDOWN N_ONE N_BATCH``: the platform's publish rate of ``bench.noop``
  with ``countdown=COUNTDOWN`` (``0``: no countdown, published at once): N_ONE
  ``apply_async`` calls one at a time (a confirm each), then one
  ``apply_many`` of N_BATCH. One warm-up call of each kind goes first, so the
  connection and the delayed path exist before the clock starts. Prints
  ``{"one": tasks/s, "batch": tasks/s, "sent": N}``.
- ``paced RATE SECONDS LOW HIGH SEED START``: from unix time START, send
  ``bench.noop`` with ``apply_async(countdown=uniform(LOW, HIGH))`` at a
  steady RATE per second for SECONDS (several processes share a rate, each
  with its own SEED). One immediate warm-up task goes first (it carries no
  due time). Prints ``{"sent": N, "seconds": S, "behind_ms": worst lag behind
  the schedule}``.
- ``stock-park N RATE COUNTDOWN``: stock Celery (``BENCH_STOCK_MODE``) sends
  N ``bench.noop`` with ``apply_async(countdown=COUNTDOWN)`` at RATE per
  second. Prints ``{"sent": N, "seconds": S}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from typing import Any

from tests.bench.apps.profiling import profiled


def rate(countdown: float, one: int, batch: int) -> dict[str, Any]:
    """Publish rates of ``apply_async`` one at a time and ``apply_many``, with or without delay."""
    import tests.bench.apps.platform_tasks as tasks

    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    tasks.noop.apply_async(**options)
    tasks.noop.apply_many([((), {})], **options)
    calls = [((), {}) for _ in range(batch)]
    with profiled("delay-publisher"):
        started = time.perf_counter()
        for _ in range(one):
            tasks.noop.apply_async(**options)
        one_seconds = time.perf_counter() - started
        started = time.perf_counter()
        ids = tasks.noop.apply_many(calls, **options)
        batch_seconds = time.perf_counter() - started
    return {"one": one / one_seconds, "batch": len(ids) / batch_seconds, "sent": one + len(ids) + 2}


def paced(
    per_second: float, seconds: float, low: float, high: float, seed: int, start: float
) -> dict[str, Any]:
    """Delayed tasks at a steady rate, each with its own uniform countdown."""
    import tests.bench.apps.platform_tasks as tasks

    draw = random.Random(seed)
    tasks.noop.apply_async()  # warm-up: the connection exists before the schedule starts
    total = int(per_second * seconds)
    behind = 0.0
    time.sleep(max(0.0, start - time.time()))
    with profiled("delay-publisher"):
        began = time.perf_counter()
        for index in range(total):
            lag = time.perf_counter() - (began + index / per_second)
            if lag < 0:
                time.sleep(-lag)
            behind = max(behind, lag)
            tasks.noop.apply_async(countdown=draw.uniform(low, high))
        elapsed = time.perf_counter() - began
    return {"sent": total, "seconds": elapsed, "behind_ms": behind * 1000.0}


def stock_park(count: int, per_second: float, countdown: float) -> dict[str, Any]:
    """Stock Celery's countdown: ``count`` tasks its worker will hold until due."""
    from tests.bench.apps.stock import app

    send = app.tasks["bench.noop"].apply_async
    began = time.perf_counter()
    for index in range(count):
        wait = began + index / per_second - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        send(countdown=countdown)
    return {"sent": count, "seconds": time.perf_counter() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    rates = commands.add_parser("rate")
    rates.add_argument("countdown", type=float)
    rates.add_argument("one", type=int)
    rates.add_argument("batch", type=int)
    steady = commands.add_parser("paced")
    steady.add_argument("rate", type=float)
    steady.add_argument("seconds", type=float)
    steady.add_argument("low", type=float)
    steady.add_argument("high", type=float)
    steady.add_argument("seed", type=int)
    steady.add_argument("start", type=float)
    park = commands.add_parser("stock-park")
    park.add_argument("count", type=int)
    park.add_argument("rate", type=float)
    park.add_argument("countdown", type=float)
    options = parser.parse_args()
    if options.command == "rate":
        result = rate(options.countdown, options.one, options.batch)
    elif options.command == "paced":
        result = paced(options.rate, options.seconds, options.low, options.high, options.seed, options.start)
    else:
        result = stock_park(options.count, options.rate, options.countdown)
    print(json.dumps(result), flush=True)
    # Celery's connections would otherwise hold the exit a while.
    os._exit(0)


if __name__ == "__main__":
    main()
