"""Publishers of the enqueue and latency cases (``python -m tests.bench.tools.publisher``).

Each run is a fresh process with the side's environment, so a platform, stock
Celery or Dramatiq app is configured exactly as its users would have it. It
prints one JSON line: ``{"sent": N, "seconds": S}``.

- ``enqueue SYSTEM HOW N``: publish N no-op tasks and time it. SYSTEM/HOW:
  ``platform one`` (``apply_async``, a confirm each), ``platform batch``
  (``apply_many``), ``stock one`` (``apply_async`` with ``confirm_publish``),
  ``raw one`` (``basic_publish_confirm``), ``raw pipelined`` (500 in flight).
- ``paced SYSTEM RATE SECONDS``: send ``bench.stamp(time.time())`` at a steady
  RATE per second, after a few warm-up messages (``sent=-1``) have run.
- ``steady RATE STOP_FILE MAX_SECONDS``: the platform's ``bench.stamp`` at RATE
  per second until STOP_FILE exists, through faults: a ``PublishError`` is
  counted (``refused``) and publishing goes on. Prints ``sent``, ``confirmed``,
  ``refused``, ``max_publish_s`` (the longest call) and ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.apps.profiling import profiled

#: Warm-up messages sent (and awaited) before a paced run.
WARM_UP = 4


def sender(system: str, task: str) -> Callable[..., object]:
    """A function that sends one ``task`` message with the system's own API."""
    if system == "platform":
        import tests.bench.apps.platform_tasks  # noqa: F401 - registers the tasks
        from config import app

        return app.tasks[task].apply_async
    if system == "stock":
        from tests.bench.apps.stock import app

        return app.tasks[task].apply_async
    if system == "dramatiq":
        from tests.bench.apps import peer

        actor = {"bench.noop": peer.noop, "bench.stamp": peer.stamp}[task]
        return lambda args=(): actor.send(*args)
    raise ValueError(f"no sender for system {system!r}")


def enqueue(system: str, how: str, count: int) -> tuple[int, float]:
    """Publish ``count`` no-op tasks; returns (sent, seconds)."""
    if system == "raw":
        return raw_enqueue(how, count)
    if system == "platform" and how == "batch":
        import tests.bench.apps.platform_tasks as tasks

        started = time.perf_counter()
        ids = tasks.noop.apply_many([((), {}) for _ in range(count)])
        return len(ids), time.perf_counter() - started
    send = sender(system, "bench.noop")
    send()  # warm up: the connection and channel exist before the clock starts
    started = time.perf_counter()
    for _ in range(count):
        send()
    return count, time.perf_counter() - started


def raw_enqueue(how: str, count: int) -> tuple[int, float]:
    from tests.bench.broker import celery_messages, publish_pipelined
    from tests.support.broker import Vhost

    vhost = Vhost(os.environ["BENCH_VHOST"])
    messages = list(celery_messages("bench.noop", (([], {}) for _ in range(count + 1))))
    if how == "pipelined":
        started = time.perf_counter()
        sent = publish_pipelined(vhost, "", "bench", messages[1:])
        return sent, time.perf_counter() - started
    with vhost.connect() as connection:
        channel = connection.channel()
        channel.confirm_select()
        channel.basic_publish_confirm(messages[0], "", "bench", mandatory=True)
        started = time.perf_counter()
        for message in messages[1:]:
            channel.basic_publish_confirm(message, "", "bench", mandatory=True)
        return count, time.perf_counter() - started


def paced(system: str, rate: float, seconds: float) -> tuple[int, float]:
    """Send stamp tasks at ``rate`` per second for ``seconds``; returns (sent, seconds)."""
    send = sender(system, "bench.stamp")
    for _ in range(WARM_UP):
        send(args=(-1.0,))
    stamps = Path(os.environ["BENCH_STAMPS"])
    deadline = time.monotonic() + 60
    while not stamps.exists() or stamps.read_bytes().count(b"\n") < WARM_UP:
        if time.monotonic() > deadline:
            raise TimeoutError("warm-up tasks did not run within 60s")
        time.sleep(0.01)
    total = int(rate * seconds)
    started = time.perf_counter()
    for index in range(total):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(args=(time.time(),))
    return total, time.perf_counter() - started


def publish_steadily(rate: float, stop_file: Path, max_seconds: float) -> dict[str, float]:
    """Send stamp tasks at ``rate`` per second until ``stop_file`` exists, counting refusals."""
    from workers.errors import PublishError

    send = sender("platform", "bench.stamp")
    confirmed = refused = 0
    longest = 0.0
    started = time.perf_counter()
    index = 0
    while not stop_file.exists() and time.perf_counter() - started < max_seconds:
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        index += 1
        began = time.perf_counter()
        try:
            send(args=(time.time(),))
        except PublishError:
            refused += 1
        else:
            confirmed += 1
        longest = max(longest, time.perf_counter() - began)
    return {
        "sent": index,
        "confirmed": confirmed,
        "refused": refused,
        "max_publish_s": longest,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("enqueue")
    one.add_argument("system", choices=["platform", "stock", "raw"])
    one.add_argument("how", choices=["one", "batch", "pipelined"])
    one.add_argument("count", type=int)
    steady = commands.add_parser("paced")
    steady.add_argument("system", choices=["platform", "stock", "dramatiq"])
    steady.add_argument("rate", type=float)
    steady.add_argument("seconds", type=float)
    until = commands.add_parser("steady")
    until.add_argument("rate", type=float)
    until.add_argument("stop_file", type=Path)
    until.add_argument("max_seconds", type=float)
    options = parser.parse_args()
    with profiled("publisher"):
        if options.command == "steady":
            result = publish_steadily(options.rate, options.stop_file, options.max_seconds)
        elif options.command == "enqueue":
            sent, elapsed = enqueue(options.system, options.how, options.count)
            result = {"sent": sent, "seconds": elapsed}
        else:
            sent, elapsed = paced(options.system, options.rate, options.seconds)
            result = {"sent": sent, "seconds": elapsed}
    print(json.dumps(result), flush=True)
    # Dramatiq's and Celery's connections would otherwise hold the exit a while.
    os._exit(0)


if __name__ == "__main__":
    main()
