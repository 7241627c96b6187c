"""The burst tour: ``python -m tasks.demo.burst`` (``make demo BURST=1`` runs it after the main tour).

Sends a burst of ``tasks.analytics.rollup`` tasks (each waits a few
milliseconds, standing in for I/O) to one queue at once, then watches the
autoscaler (``celery -A config scale run``, started by ``make up AUTOSCALE=1``)
absorb it: one line whenever the backlog, the pool or the engine's decision
changes, then a summary: how long the burst took to drain, the peak pool,
the time from the burst to the first scale-up, the time back to the minimum,
and how many messages the broker redelivered (0: no busy worker was stopped).

What it reads, all of it what an operator can see too:

- the engine's last decision per queue, from the state store
  (:mod:`workers.ops.scale_state`, as ``celery -A config scale status``);
- completions, from the idempotency store the workers write;
- the queue's redelivery count, from the management API.

Exit codes: 0 the pool grew, every task completed and the pool came back to
its minimum; 1 anything else (no autoscaler for the queue, the broker or the
store can't be read, the timeout passed; the line says which); 2 bad
arguments (argparse).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from config import app
from config.app import platform_config
from config.settings import Settings, scale_values
from tasks.analytics import rollup
from workers.broker import masked_url
from workers.delivery.idempotency import open_store
from workers.ops.queue_stats import ManagementError, fetch_queues, vhost_of
from workers.ops.scale_state import live_decisions

#: The queue the burst goes to, unless ``--queue`` says otherwise.
DEFAULT_QUEUE = "analytics"
#: Tasks in the burst.
DEFAULT_TASKS = 3_000
#: Milliseconds each task waits.
DEFAULT_MILLIS = 20.0
#: Seconds to wait for the burst to drain and the pool to shrink back.
DEFAULT_TIMEOUT = 240.0
#: Seconds between two looks.
POLL = 1.0
#: Where each line goes.
Out = Callable[[str], None]


@dataclass(frozen=True)
class Look:
    """What the tour saw at one poll."""

    #: Seconds since the burst was confirmed.
    at: float
    #: Tasks of the burst completed so far.
    completed: int
    #: The engine's due backlog of the queue (None: the engine could not read the broker).
    backlog: int | None
    #: Workers the engine counts for the queue.
    workers: int
    #: Workers the engine wants.
    desired: int
    #: The engine's reason for its last decision.
    reason: str


@dataclass(frozen=True)
class Outcome:
    """The summary of a finished (or timed-out) burst (pure, from the looks)."""

    tasks: int
    minimum: int
    looks: tuple[Look, ...]

    @property
    def drained_at(self) -> float | None:
        """Seconds from the burst to its last completion, if every task completed."""
        return next((look.at for look in self.looks if look.completed >= self.tasks), None)

    @property
    def first_scale_up_at(self) -> float | None:
        """Seconds from the burst to the first look with more workers than at the start."""
        start = self.looks[0].workers if self.looks else 0
        return next((look.at for look in self.looks if look.workers > start), None)

    @property
    def peak(self) -> int:
        """The most workers seen."""
        return max((look.workers for look in self.looks), default=0)

    @property
    def back_to_minimum_at(self) -> float | None:
        """Seconds to the first look, after the drain and the growth, with the pool at its minimum."""
        drained, grew = self.drained_at, self.first_scale_up_at
        if drained is None or grew is None:
            return None
        return next(
            (look.at for look in self.looks if look.at >= drained and look.workers <= self.minimum),
            None,
        )

    @property
    def absorbed(self) -> bool:
        """The pool grew, every task completed and the pool came back to its minimum."""
        return self.back_to_minimum_at is not None


def changed(previous: Look | None, look: Look) -> bool:
    """Whether ``look`` is worth a line: the pool, the decision or the thousands of the backlog moved."""
    if previous is None:
        return True
    return (
        (look.workers, look.desired, look.reason) != (previous.workers, previous.desired, previous.reason)
        or _thousands(look.backlog) != _thousands(previous.backlog)
        or previous.completed == 0 < look.completed
    )


def _thousands(backlog: int | None) -> int | None:
    return None if backlog is None else backlog // 1000


def look_line(look: Look) -> str:
    """One line of the timeline."""
    backlog = "?" if look.backlog is None else f"{look.backlog:,}"
    arrow = f"{look.workers}" if look.desired == look.workers else f"{look.workers} -> {look.desired}"
    return f"  +{look.at:5.1f}s  backlog {backlog:>6}  done {look.completed:>6,}  workers {arrow:<7}  {look.reason}"


def summary_lines(outcome: Outcome, redelivered: int | None, timeout: float) -> list[str]:
    """The summary printed after the timeline."""
    lines = [""]
    drained = outcome.drained_at
    completed = outcome.looks[-1].completed if outcome.looks else 0
    if drained is None:
        lines.append(f"Not drained: {completed:,} of {outcome.tasks:,} completed within {timeout:g}s.")
    else:
        lines.append(f"Burst of {outcome.tasks:,} tasks drained in {drained:.1f}s.")
    grew = outcome.first_scale_up_at
    lines.append(
        f"First scale-up {grew:.1f}s after the burst; peak {outcome.peak} workers."
        if grew is not None
        else "The pool never grew (is the burst above PLATFORM_SCALE_UP_ABOVE?)."
    )
    back = outcome.back_to_minimum_at
    if back is not None:
        lines.append(f"Back to {outcome.minimum} worker(s) {back:.1f}s after the burst.")
    elif drained is not None and grew is not None:
        lines.append(
            f"Still above {outcome.minimum} worker(s) at the timeout: the pool shrinks one step per "
            "PLATFORM_SCALE_COOLDOWN once the backlog stayed low for PLATFORM_SCALE_WINDOW."
        )
    if redelivered is not None:
        lines.append(
            f"Messages redelivered by the broker meanwhile: {redelivered} (0: no busy worker was stopped)."
        )
    return lines


def redeliveries(settings: Settings, queue: str) -> int | None:
    """The queue's redelivery count so far, from the management API (None: not known)."""
    try:
        queues = fetch_queues(settings.management_url, vhost_of(settings.broker_url))
    except ManagementError:
        return None
    for raw in queues:
        if raw.get("name") == queue:
            return int((raw.get("message_stats") or {}).get("redeliver", 0))
    return None


class CompletionCounter:
    """Counts the burst's tasks the workers marked completed (ids are checked until they are)."""

    def __init__(self, state_url: str, task_ids: Iterable[str]) -> None:
        self.store = open_store(state_url)
        self.waiting = set(task_ids)
        self.done = 0

    def count(self) -> int:
        """Completed so far."""
        finished = {task_id for task_id in self.waiting if self.store.is_completed(task_id)}
        self.waiting -= finished
        self.done += len(finished)
        return self.done


def run(queue: str, tasks: int, millis: float, timeout: float, out: Out = print) -> int:
    """Send the burst and follow it; the exit code."""
    config = platform_config(app)
    settings = config.settings
    if queue not in settings.queues and queue != settings.default_queue:
        out(f"demo burst: {queue!r} is not a work queue of PLATFORM_QUEUES")
        return 1
    decision = live_decisions(settings.state_url, settings.scale_interval).get(queue)
    if decision is None:
        out(
            f"demo burst: no autoscaler is running for {queue!r}: start it with "
            "`make up AUTOSCALE=1` (after `make down` if `make up` runs fixed workers)"
        )
        return 1
    minimum = int(scale_values(settings, queue)["scale_min"])
    before = redeliveries(settings, queue)
    out(
        f"\nBurst tour on {masked_url(settings.broker_url)}: {tasks:,} x {rollup.name} ({millis:g} ms each) to {queue}"
    )
    out(
        f"The autoscaler has {decision.report.workers} worker(s) on {queue}; watching it for at most {timeout:g}s."
    )
    ids = rollup.apply_many([((batch, millis), {}) for batch in range(tasks)], queue=queue)
    sent_at = time.monotonic()
    counter = CompletionCounter(settings.state_url, ids)
    looks: list[Look] = []
    while True:
        at = time.monotonic() - sent_at
        record = live_decisions(settings.state_url, settings.scale_interval).get(queue)
        if record is None:
            out(f"demo burst: the autoscaler stopped writing decisions for {queue!r}")
            return 1
        report = record.report
        look = Look(at, counter.count(), report.backlog, report.workers, report.desired, report.reason)
        if changed(looks[-1] if looks else None, look):
            out(look_line(look))
        looks.append(look)
        outcome = Outcome(tasks, minimum, tuple(looks))
        if outcome.absorbed or at >= timeout:
            break
        time.sleep(POLL)
    after = redeliveries(settings, queue)
    redelivered = None if before is None or after is None else after - before
    for line in summary_lines(outcome, redelivered, timeout):
        out(line)
    return 0 if outcome.absorbed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the tour; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tasks.demo.burst", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--queue", default=DEFAULT_QUEUE, help="work queue to send the burst to")
    parser.add_argument("--tasks", type=_positive_int, default=DEFAULT_TASKS, help="tasks in the burst")
    parser.add_argument("--millis", type=float, default=DEFAULT_MILLIS, help="milliseconds each task waits")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to follow the burst")
    args = parser.parse_args(argv)
    try:
        return run(args.queue, args.tasks, args.millis, args.timeout)
    except BrokenPipeError:
        return 1
    except OSError as exc:
        print(f"demo burst: lost the broker or the state store: {exc}", file=sys.stderr)
        return 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of tasks")
    return value


if __name__ == "__main__":
    sys.exit(main())
