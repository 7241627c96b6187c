"""The scaling engine: one loop that reads the signal, decides per queue, and resizes a pool.

::

    every interval:
        signals = read_signals(source, queues)        SignalUnavailable -> log once, hold
        for queue in queues:
            current  = pool.workers(queue)            (dry run: the queue's consumers)
            decision = decide(signal, current, limits[queue], history[queue], now)
            if decision.change and not dry run:
                pool.resize(queue, decision.desired, decision.reason)
                history[queue] = decision.history.acted(now)
        report(the pass's decisions)                  (the state store, for metrics and Flower)

The decision is :func:`workers.scaling.policy.decide`'s; this module only
carries each queue's history between passes, records an action when it
acted, and says what it did: one log line per action (with the reason), one
line when the broker stops answering and one when it answers again. Without
a signal nothing changes: the engine never scales on no data.

A queue the broker does not have yet (not declared) counts as empty: its
pool gets its minimum, whose workers declare it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from workers.scaling.limits import ScaleLimits
from workers.scaling.policy import History, decide
from workers.scaling.pool import Pool, PoolUnavailable
from workers.scaling.signal import CountsSource, QueueSignal, SignalUnavailable, read_signals

logger = logging.getLogger(__name__)

#: Scale-up and scale-down, as the actions are counted.
UP, DOWN = "up", "down"


@dataclass(frozen=True)
class QueueReport:
    """One queue's last decision, as the engine made it (what ``scale status`` and the metrics show)."""

    queue: str
    #: Ready + unacked when decided (0 for a queue not declared yet); None when unknown.
    backlog: int | None
    #: Workers the pool ran for the queue (dry run: its consumers).
    workers: int
    desired: int
    reason: str
    #: Whether the engine asked the pool to resize on this pass.
    acted: bool
    #: Wall-clock time of the decision (Unix seconds).
    at: float
    #: Actions taken since the engine started, by direction.
    actions_up: int = 0
    actions_down: int = 0
    #: Whether the engine only printed its decisions.
    dry_run: bool = False


#: Receives each pass's reports (e.g. writes them to the state store).
Reporter = Callable[[Sequence[QueueReport]], None]


class Engine:
    """Carries each queue's history between passes and resizes the pool when the policy says so."""

    def __init__(
        self,
        source: CountsSource,
        queues: Iterable[str],
        pool: Pool | None,
        limits: Mapping[str, ScaleLimits],
        *,
        dry_run: bool = False,
        delayed_due_in: Callable[[], float | None] | None = None,
        report: Reporter | None = None,
        echo: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Args:
            source: reads the broker's counts (raises SignalUnavailable when it can't).
            queues: the queues to scale (work and subscriber queues).
            pool: where their workers run (None only for a dry run).
            limits: each queue's limits.
            dry_run: decide and print, never resize (current workers: the queue's consumers).
            delayed_due_in: seconds until the soonest delayed task falls due (for scale to zero).
            report: receives each pass's decisions.
            echo: prints a dry run's decisions (default: log them).
            clock: monotonic seconds (the histories' clock).
            wall_clock: Unix seconds (the reports' time).
        """
        if pool is None and not dry_run:
            raise ValueError("an engine that acts needs a pool")
        self.source = source
        self.queues = tuple(queues)
        self.pool = pool
        self.limits = dict(limits)
        self.dry_run = dry_run
        self.delayed_due_in = delayed_due_in
        self.report = report
        self.echo = echo
        self.clock = clock
        self.wall_clock = wall_clock
        self.histories: dict[str, History] = {}
        self.actions: dict[tuple[str, str], int] = {}
        #: The last report of each queue.
        self.last: dict[str, QueueReport] = {}
        self._unavailable: str | None = None
        #: Each queue's pool restarts at the last pass, and when the deaths since were seen.
        self._restarts_seen: dict[str, int] = {}
        self._deaths: dict[str, list[float]] = {}

    def step(self) -> list[QueueReport]:
        """One pass over every queue; an empty list when there was no signal (nothing changed).

        Returns:
            This pass's reports, one per queue.
        """
        try:
            due_in = self.delayed_due_in() if self.delayed_due_in else None
            signals = read_signals(self.source, self.queues, due_in)
        except SignalUnavailable as exc:
            if self._unavailable is None:
                logger.warning("scale: %s; holding every pool as it is", exc)
            self._unavailable = str(exc)
            return []
        if self._unavailable is not None:
            logger.info("scale: the broker answers again")
            self._unavailable = None
        now = self.clock()
        reports = []
        for queue in self.queues:
            # Not declared yet (a fresh vhost): nothing is due, and the minimum's
            # workers declare the topology when they start.
            signal = signals.get(queue) or QueueSignal(queue, 0, 0, 0, delayed_due_in=due_in)
            try:
                current = self._workers(queue, signal.consumers)
            except (OSError, PoolUnavailable) as exc:
                logger.warning(
                    "scale %s: the pool did not say how many workers it runs: %s; holding", queue, exc
                )
                continue
            signal = replace(signal, recent_deaths=self._recent_deaths(queue, now))
            decision = decide(signal, current, self.limits[queue], self.histories.get(queue, History()), now)
            history = decision.history
            acted = decision.change != 0 and not self.dry_run
            if acted and self.pool is not None:
                try:
                    self.pool.resize(queue, decision.desired, decision.reason)
                except (OSError, PoolUnavailable) as exc:
                    # e.g. a worker process that could not be started: try again next pass
                    logger.warning("scale %s: resize to %d failed: %s", queue, decision.desired, exc)
                    acted = False
            if acted:
                history = history.acted(now)
                direction = UP if decision.change > 0 else DOWN
                self.actions[queue, direction] = self.actions.get((queue, direction), 0) + 1
                logger.info("scale %s: %d -> %d: %s", queue, current, decision.desired, decision.reason)
            elif self.dry_run:
                self._say(f"scale {queue} (dry run): {decision.reason}")
            else:
                logger.debug("scale %s: %s", queue, decision.reason)
            self.histories[queue] = history
            reports.append(
                self._report(queue, signal.due_backlog, current, decision.desired, decision.reason, acted)
            )
        if self.report is not None:
            self.report(reports)
        return reports

    def run(self, interval: float, stop: threading.Event, passes: int | None = None) -> None:
        """Pass every ``interval`` seconds until ``stop`` is set (or after ``passes`` passes).

        Args:
            interval: seconds from the start of one pass to the start of the next.
            stop: set it (e.g. from a signal handler) to end the loop after the pass under way.
            passes: stop after this many passes (None: until ``stop``).
        """
        done = 0
        while not stop.is_set():
            started = self.clock()
            self.step()
            done += 1
            if passes is not None and done >= passes:
                return
            stop.wait(max(interval - (self.clock() - started), 0.0))

    def _recent_deaths(self, queue: str, now: float) -> int:
        """Workers of ``queue`` that died within its window, from the pool's restart count.

        A pool that counts restarts has a ``restarts`` mapping (queue -> workers
        started again, e.g. :class:`~workers.scaling.local.LocalPool`); for any
        other pool this is 0 and the poison rule of the policy never applies.
        """
        restarts = getattr(self.pool, "restarts", None)
        total = restarts.get(queue, 0) if isinstance(restarts, Mapping) else 0
        new = total - self._restarts_seen.get(queue, total)
        self._restarts_seen[queue] = total
        start = now - self.limits[queue].window
        deaths = [at for at in self._deaths.get(queue, []) if at > start] + [now] * max(new, 0)
        self._deaths[queue] = deaths
        return len(deaths)

    def _workers(self, queue: str, consumers: int | None) -> int:
        """The pool's workers of ``queue``; in a dry run, its consumers (0 when unknown)."""
        if self.dry_run or self.pool is None:
            return consumers or 0
        return self.pool.workers(queue)

    def _report(
        self, queue: str, backlog: int | None, current: int, desired: int, reason: str, acted: bool
    ) -> QueueReport:
        report = QueueReport(
            queue=queue,
            backlog=backlog,
            workers=current,
            desired=desired,
            reason=reason,
            acted=acted,
            at=self.wall_clock(),
            actions_up=self.actions.get((queue, UP), 0),
            actions_down=self.actions.get((queue, DOWN), 0),
            dry_run=self.dry_run,
        )
        self.last[queue] = report
        return report

    def _say(self, line: str) -> None:
        if self.echo is not None:
            self.echo(line)
        else:
            logger.info("%s", line)
