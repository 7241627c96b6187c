"""The scaling decision: how many workers one queue should have now (pure: no I/O, no clock).

::

    decide(signal, current_workers, limits, history, now) -> Decision(desired, reason, history)

The first rule that applies decides:

    bounds     current outside [min, max]                  -> straight to the bound
               0 workers, something ready or unacked        -> 1 (up to step_up for a burst)
    cooldown   the last action was under `cooldown` ago    -> hold
    poison     the load wants more, but POISON_DEATHS or   -> hold (poison suspected)
               more workers died within the window
    up         the load wants more than current            -> + at most step_up, up to max
    down       every sample of the window wants fewer,     -> - at most step_down, not below min;
               and the samples span the whole window          with min 0, to 0 only when nothing is
                                                              ready or unacked and no delayed task
                                                              falls due within the window
    hold

What the load wants, from the due backlog (ready + unacked, :mod:`workers.scaling.signal`):

- thresholds (the design's): above ``up_above`` (1,000) ``step_up`` (2) more,
  below ``down_below`` (100) ``step_down`` (1) fewer, in between as many as now;
- a latency target, when set and the median task time is known (the way cloud
  target tracking does it): ``ceil(backlog / (target_latency / median_task_seconds))``
  workers, each finishing ``target / median`` tasks within the target.

A poison message (one that kills its worker) goes back to the queue at each
death and counts as due like any other: the management API can't tell them
apart. Deaths can: the pool restarts the workers that die, and while
:data:`POISON_DEATHS` or more died within the window the pool does not grow
(the platform's poison limit dead-letters such a message after a few
deliveries, and the backlog then counts again). A single death, e.g. one
out-of-memory kill in a real burst, does not stop growth.

Scaling up looks at the present sample only, so a burst is met at once;
scaling down needs the whole stabilisation window to agree (hysteresis), so a
sawtooth load holds its pool instead of flapping, and it goes only as low as
the highest want of the window. The cooldown spaces any two actions.

:class:`History` is what the caller carries from one call to the next: the
samples of the last window (plus the one before it, which says what held at
the window's start) and when the pool last changed. ``decide`` adds the
present sample; only the caller knows whether it acted, so it records that
with :meth:`History.acted` (an advisory caller, such as the metrics, never does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workers.scaling.limits import ScaleLimits
from workers.scaling.signal import QueueSignal

#: Worker deaths within the stabilisation window from which the pool stops growing (poison suspected).
POISON_DEATHS = 2


@dataclass(frozen=True)
class BacklogSample:
    """The due backlog one call saw."""

    #: The caller's clock, in seconds.
    at: float
    backlog: int


@dataclass(frozen=True)
class History:
    """What one queue's past calls saw and did: carried by the caller, never changed in place."""

    #: Oldest first: the last sample at or before the window's start, then the window's.
    samples: tuple[BacklogSample, ...] = ()
    #: When the caller last changed the pool; None: never.
    last_action_at: float | None = None

    def observed(self, at: float, backlog: int, window: float) -> History:
        """This history plus a sample at ``at``, without the samples the window no longer needs."""
        start = at - window
        kept = [sample for sample in self.samples if sample.at <= at]
        kept.append(BacklogSample(at, backlog))
        before = [sample for sample in kept if sample.at <= start]
        inside = [sample for sample in kept if sample.at > start]
        return History((*before[-1:], *inside), self.last_action_at)

    def acted(self, at: float) -> History:
        """This history with the pool changed at ``at`` (what the cooldown counts from)."""
        return History(self.samples, at)

    def spans(self, at: float, window: float) -> bool:
        """Whether the samples reach back to the start of the window ending at ``at``."""
        return bool(self.samples) and self.samples[0].at <= at - window


@dataclass(frozen=True)
class Decision:
    """How many workers a queue should have, and why, in one short sentence."""

    current: int
    desired: int
    #: e.g. ``backlog 5,000 > 1,000: +2 (1 -> 3)``.
    reason: str
    #: The history to pass to the next call (this call's sample added; no action recorded).
    history: History

    @property
    def change(self) -> int:
        """Workers to add (positive) or remove (negative)."""
        return self.desired - self.current


def decide(
    signal: QueueSignal, current_workers: int, limits: ScaleLimits, history: History, now: float
) -> Decision:
    """The number of workers ``signal``'s queue should have at ``now``.

    Args:
        signal: the queue's due backlog, consumers and delayed work, now.
        current_workers: workers the queue has now.
        limits: the queue's bounds, thresholds, steps, cooldown and window.
        history: what the previous calls for this queue saw (an empty ``History()`` at first).
        now: the caller's clock, in seconds (the same clock as ``history``'s).

    Returns:
        The desired count with its reason, and the history to carry to the next call.

    Raises:
        ValueError: ``current_workers`` is negative.
    """
    if current_workers < 0:
        raise ValueError(f"current_workers must be at least 0, got {current_workers}")
    history = history.observed(now, signal.due_backlog, limits.window)
    current = current_workers
    bounded = _bounds(signal, current, limits)
    if bounded is not None:
        desired, reason = bounded
        return Decision(current, desired, reason, history)
    desired, why = _follow_load(signal, current, limits, history, now)
    if desired == current:
        return Decision(current, current, f"{why}: hold ({current})", history)
    last_action = history.last_action_at
    if last_action is not None and now - last_action < limits.cooldown:
        cooling = f"cooling down ({now - last_action:.0f} s of {limits.cooldown:g} s)"
        return Decision(current, current, f"{why}, but {cooling}: hold ({current})", history)
    return Decision(current, desired, f"{why}: {desired - current:+d} ({current} -> {desired})", history)


def _bounds(signal: QueueSignal, current: int, limits: ScaleLimits) -> tuple[int, str] | None:
    """Straight to a bound when ``current`` is outside them, else None."""
    if current > limits.max_workers:
        return limits.max_workers, f"above max {limits.max_workers}: {current} -> {limits.max_workers}"
    if current < limits.min_workers:
        return limits.min_workers, f"below min {limits.min_workers}: {current} -> {limits.min_workers}"
    if current == 0 and not signal.idle:
        wanted = _wanted(signal.due_backlog, signal, 0, limits)
        woken = max(1, min(wanted, limits.step_up, limits.max_workers))
        return woken, f"{signal.due_backlog:,} due and no worker: 0 -> {woken}"
    return None


def _follow_load(
    signal: QueueSignal, current: int, limits: ScaleLimits, history: History, now: float
) -> tuple[int, str]:
    """(desired, why) from the load alone: up at once, down when the whole window agrees, else current."""
    load = _describe_load(signal, limits)
    wanted = _wanted(signal.due_backlog, signal, current, limits)
    if wanted > current:
        if signal.recent_deaths >= POISON_DEATHS:
            deaths = f"{signal.recent_deaths} worker deaths within {limits.window:g} s"
            return current, f"{load} but {deaths} (poison suspected)"
        desired = min(wanted, current + limits.step_up, limits.max_workers)
        return (desired, load) if desired > current else (current, f"{load} but at max {limits.max_workers}")
    if wanted == current:
        return current, load
    if not history.spans(now, limits.window):
        seen = now - history.samples[0].at
        return current, f"{load} for {seen:.0f} s of the {limits.window:g} s window"
    wants = [_wanted(sample.backlog, signal, current, limits) for sample in history.samples]
    if max(wants) >= current:
        peak = max(sample.backlog for sample in history.samples)
        return current, f"{load} but {peak:,} within the last {limits.window:g} s"
    desired = max(max(wants), current - limits.step_down, _floor(signal, limits))
    if desired == current:
        if limits.min_workers > 0:
            return current, f"{load} but at min {limits.min_workers}"
        return current, f"{load} but {signal.due_backlog:,} still due, so not to 0"
    if desired == 0 and _delayed_due_soon(signal, limits):
        due = max(signal.delayed_due_in or 0.0, 0.0)
        return current, f"{load} but a delayed task falls due in {due:.0f} s, so not to 0"
    return desired, f"{load} for {limits.window:g} s"


def _floor(signal: QueueSignal, limits: ScaleLimits) -> int:
    """The fewest workers now: min, and with min 0, one while anything is ready or unacked."""
    if limits.min_workers > 0:
        return limits.min_workers
    return 0 if signal.idle else 1


def _wanted(backlog: int, signal: QueueSignal, current: int, limits: ScaleLimits) -> int:
    """Workers a backlog asks for, before bounds and steps (never below 0)."""
    per_worker = _tasks_per_worker(signal, limits)
    if per_worker is not None:
        return math.ceil(backlog / per_worker)
    if backlog > limits.up_above:
        return current + limits.step_up
    if backlog < limits.down_below:
        return max(current - limits.step_down, 0)
    return current


def _tasks_per_worker(signal: QueueSignal, limits: ScaleLimits) -> float | None:
    """Tasks one worker finishes within the latency target; None when thresholds apply instead."""
    median = signal.median_task_seconds
    if limits.target_latency is None or median is None or median <= 0:
        return None
    return limits.target_latency / median


def _describe_load(signal: QueueSignal, limits: ScaleLimits) -> str:
    backlog = signal.due_backlog
    per_worker = _tasks_per_worker(signal, limits)
    if per_worker is not None:
        wanted = math.ceil(backlog / per_worker)
        return (
            f"backlog {backlog:,} at {signal.median_task_seconds:g} s a task"
            f" wants {wanted} for {limits.target_latency:g} s"
        )
    if backlog > limits.up_above:
        return f"backlog {backlog:,} > {limits.up_above:,}"
    if backlog < limits.down_below:
        return f"backlog {backlog:,} < {limits.down_below:,}"
    return f"backlog {backlog:,} within {limits.down_below:,}..{limits.up_above:,}"


def _delayed_due_soon(signal: QueueSignal, limits: ScaleLimits) -> bool:
    """Whether a delayed task falls due within the window (so the pool must not go to zero)."""
    return signal.delayed_due_in is not None and signal.delayed_due_in <= limits.window
