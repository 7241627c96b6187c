"""The scaling decision, table by table: decide(signal, current, limits, history, now) -> Decision.

Times are seconds on the caller's clock; every case decides at ``NOW``.
The defaults are the design's: above 1,000 due add 2, below 100 remove 1,
min 1, max 8, cooldown 60 s, window 300 s.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pytest

from config.settings import load_settings
from workers.ops.metrics import desired_worker_samples
from workers.scaling.limits import ScaleLimits
from workers.scaling.policy import BacklogSample, Decision, History, decide
from workers.scaling.signal import QueueSignal, queue_signals, read_signals

NOW = 10_000.0
DEFAULTS = ScaleLimits()
TO_ZERO = ScaleLimits(min_workers=0)
#: 20 tasks per worker within the target: 0.5 s a task, 10 s target.
LATENCY = ScaleLimits(target_latency=10.0)


def signal(
    ready: int = 0,
    unacked: int = 0,
    consumers: int = 0,
    delayed_due_in: float | None = None,
    median: float | None = None,
) -> QueueSignal:
    return QueueSignal("orders", ready, unacked, consumers, delayed_due_in, median)


def steady(*backlogs: int, since: float = 300.0, every: float = 30.0) -> History:
    """Samples from ``since`` seconds before NOW until just before it, cycling through ``backlogs``."""
    count = int(since / every)
    return History(
        tuple(BacklogSample(NOW - since + i * every, backlogs[i % len(backlogs)]) for i in range(count))
    )


def acted(seconds_ago: float, history: History | None = None) -> History:
    return (history or History()).acted(NOW - seconds_ago)


# (id, signal, current workers, limits, history, desired, reason)
CASES = [
    # --- poison: workers dying within the window stop growth, not shrinking
    (
        "two deaths within the window: no growth, poison suspected",
        QueueSignal("orders", 5000, 0, 1, recent_deaths=2),
        1,
        DEFAULTS,
        History(),
        1,
        "backlog 5,000 > 1,000 but 2 worker deaths within 300 s (poison suspected): hold (1)",
    ),
    (
        "one death: a burst still grows",
        QueueSignal("orders", 5000, 0, 1, recent_deaths=1),
        1,
        DEFAULTS,
        History(),
        3,
        "backlog 5,000 > 1,000: +2 (1 -> 3)",
    ),
    (
        "deaths never hold a pool below its minimum",
        QueueSignal("orders", 5000, 0, 1, recent_deaths=5),
        0,
        DEFAULTS,
        History(),
        1,
        "below min 1: 0 -> 1",
    ),
    # --- thresholds, going up: the present sample is enough
    (
        "above the up threshold: +2",
        signal(ready=5000),
        1,
        DEFAULTS,
        History(),
        3,
        "backlog 5,000 > 1,000: +2 (1 -> 3)",
    ),
    (
        "unacked messages count as due",
        signal(ready=600, unacked=600),
        2,
        DEFAULTS,
        History(),
        4,
        "backlog 1,200 > 1,000: +2 (2 -> 4)",
    ),
    (
        "exactly at the up threshold: hold",
        signal(ready=1000),
        2,
        DEFAULTS,
        steady(1000),
        2,
        "backlog 1,000 within 100..1,000: hold (2)",
    ),
    (
        "between the thresholds: hold",
        signal(ready=500),
        3,
        DEFAULTS,
        steady(500),
        3,
        "backlog 500 within 100..1,000: hold (3)",
    ),
    (
        "exactly at the down threshold: hold",
        signal(ready=100),
        3,
        DEFAULTS,
        steady(100),
        3,
        "backlog 100 within 100..1,000: hold (3)",
    ),
    (
        "the step up is a setting",
        signal(ready=5000),
        1,
        ScaleLimits(step_up=5),
        History(),
        6,
        "backlog 5,000 > 1,000: +5 (1 -> 6)",
    ),
    # --- clamps
    (
        "a step up stops at max",
        signal(ready=5000),
        7,
        DEFAULTS,
        History(),
        8,
        "backlog 5,000 > 1,000: +1 (7 -> 8)",
    ),
    (
        "at max: hold",
        signal(ready=5000),
        8,
        DEFAULTS,
        History(),
        8,
        "backlog 5,000 > 1,000 but at max 8: hold (8)",
    ),
    ("above max: straight down to max", signal(ready=50), 10, DEFAULTS, History(), 8, "above max 8: 10 -> 8"),
    (
        "below min: straight up to min",
        signal(),
        0,
        ScaleLimits(min_workers=2),
        History(),
        2,
        "below min 2: 0 -> 2",
    ),
    (
        "at min: hold",
        signal(),
        1,
        DEFAULTS,
        steady(0),
        1,
        "backlog 0 < 100 but at min 1: hold (1)",
    ),
    # --- thresholds, going down: the whole window must agree
    (
        "below the down threshold for the whole window: -1",
        signal(ready=40),
        3,
        DEFAULTS,
        steady(40),
        2,
        "backlog 40 < 100 for 300 s: -1 (3 -> 2)",
    ),
    (
        "below for less than the window: hold",
        signal(ready=40),
        3,
        DEFAULTS,
        steady(40, since=120),
        3,
        "backlog 40 < 100 for 120 s of the 300 s window: hold (3)",
    ),
    (
        "one sample in the window says otherwise: hold",
        signal(ready=40),
        3,
        DEFAULTS,
        steady(40, 500, 40),
        3,
        "backlog 40 < 100 but 500 within the last 300 s: hold (3)",
    ),
    (
        "the sample before the window does not hold it back",
        signal(ready=40),
        3,
        DEFAULTS,
        History((BacklogSample(NOW - 400, 5000), BacklogSample(NOW - 300, 40), BacklogSample(NOW - 150, 40))),
        2,
        "backlog 40 < 100 for 300 s: -1 (3 -> 2)",
    ),
    (
        "the step down is a setting, but not below min",
        signal(ready=40),
        3,
        ScaleLimits(step_down=5),
        steady(40),
        1,
        "backlog 40 < 100 for 300 s: -2 (3 -> 1)",
    ),
    (
        "a window of 0 scales down on the present sample",
        signal(ready=40),
        3,
        ScaleLimits(window=0),
        History(),
        2,
        "backlog 40 < 100 for 0 s: -1 (3 -> 2)",
    ),
    # --- cooldown between two actions
    (
        "cooldown holds a scale-up",
        signal(ready=5000),
        1,
        DEFAULTS,
        acted(20),
        1,
        "backlog 5,000 > 1,000, but cooling down (20 s of 60 s): hold (1)",
    ),
    (
        "cooldown over: up again",
        signal(ready=5000),
        3,
        DEFAULTS,
        acted(60),
        5,
        "backlog 5,000 > 1,000: +2 (3 -> 5)",
    ),
    (
        "cooldown holds a scale-down",
        signal(ready=40),
        3,
        DEFAULTS,
        acted(59, steady(40)),
        3,
        "backlog 40 < 100 for 300 s, but cooling down (59 s of 60 s): hold (3)",
    ),
    (
        "cooldown does not keep a pool above max",
        signal(ready=50),
        10,
        DEFAULTS,
        acted(1),
        8,
        "above max 8: 10 -> 8",
    ),
    # --- scale to zero, and not to zero
    (
        "min 0, nothing ready, unacked or delayed: to zero",
        signal(),
        1,
        TO_ZERO,
        steady(0),
        0,
        "backlog 0 < 100 for 300 s: -1 (1 -> 0)",
    ),
    (
        "min 0 but a delayed task falls due within the window: not to zero",
        signal(delayed_due_in=120),
        1,
        TO_ZERO,
        steady(0),
        1,
        "backlog 0 < 100 but a delayed task falls due in 120 s, so not to 0: hold (1)",
    ),
    (
        "min 0 and a delayed task late already: not to zero",
        signal(delayed_due_in=-3),
        1,
        TO_ZERO,
        steady(0),
        1,
        "backlog 0 < 100 but a delayed task falls due in 0 s, so not to 0: hold (1)",
    ),
    (
        "min 0 and the delayed task falls due after the window: to zero",
        signal(delayed_due_in=600),
        1,
        TO_ZERO,
        steady(0),
        0,
        "backlog 0 < 100 for 300 s: -1 (1 -> 0)",
    ),
    (
        "min 0 but a message unacked: not to zero",
        signal(unacked=1),
        1,
        TO_ZERO,
        steady(1),
        1,
        "backlog 1 < 100 but 1 still due, so not to 0: hold (1)",
    ),
    (
        "min 0 but a message ready: not to zero",
        signal(ready=3),
        1,
        TO_ZERO,
        steady(3),
        1,
        "backlog 3 < 100 but 3 still due, so not to 0: hold (1)",
    ),
    (
        "min 0 but the default min 1: never to zero",
        signal(),
        1,
        DEFAULTS,
        steady(0),
        1,
        "backlog 0 < 100 but at min 1: hold (1)",
    ),
    ("at zero and idle: stay", signal(), 0, TO_ZERO, steady(0), 0, "backlog 0 < 100: hold (0)"),
    (
        "at zero, a delayed task soon but nothing due yet: stay",
        signal(delayed_due_in=10),
        0,
        TO_ZERO,
        steady(0),
        0,
        "backlog 0 < 100: hold (0)",
    ),
    (
        "at zero, work arrives: wake one, cooldown or not",
        signal(ready=5),
        0,
        TO_ZERO,
        acted(1),
        1,
        "5 due and no worker: 0 -> 1",
    ),
    (
        "at zero, a burst arrives: wake a step",
        signal(ready=5000),
        0,
        TO_ZERO,
        History(),
        2,
        "5,000 due and no worker: 0 -> 2",
    ),
    # --- latency target: ceil(backlog / (target / median)), 20 tasks a worker here
    (
        "latency target: wants 45, one step up",
        signal(ready=900, median=0.5),
        1,
        LATENCY,
        History(),
        3,
        "backlog 900 at 0.5 s a task wants 45 for 10 s: +2 (1 -> 3)",
    ),
    (
        "latency target: up to max at most",
        signal(ready=900, median=0.5),
        7,
        LATENCY,
        History(),
        8,
        "backlog 900 at 0.5 s a task wants 45 for 10 s: +1 (7 -> 8)",
    ),
    (
        "latency target: below the up threshold it still grows",
        signal(ready=90, median=0.5),
        2,
        LATENCY,
        History(),
        4,
        "backlog 90 at 0.5 s a task wants 5 for 10 s: +2 (2 -> 4)",
    ),
    (
        "latency target met exactly: hold",
        signal(ready=60, median=0.5),
        3,
        LATENCY,
        steady(60),
        3,
        "backlog 60 at 0.5 s a task wants 3 for 10 s: hold (3)",
    ),
    (
        "latency target: down one step when the window agrees",
        signal(ready=30, median=0.5),
        5,
        LATENCY,
        steady(30),
        4,
        "backlog 30 at 0.5 s a task wants 2 for 10 s for 300 s: -1 (5 -> 4)",
    ),
    (
        "latency target: down no lower than the window's highest want",
        signal(ready=30, median=0.5),
        5,
        ScaleLimits(target_latency=10.0, step_down=4),
        steady(30, 61),
        4,
        "backlog 30 at 0.5 s a task wants 2 for 10 s for 300 s: -1 (5 -> 4)",
    ),
    (
        "latency target without a task time: the thresholds decide",
        signal(ready=900),
        2,
        LATENCY,
        steady(900),
        2,
        "backlog 900 within 100..1,000: hold (2)",
    ),
]


@pytest.mark.parametrize(
    ("case", "queue_signal", "current", "limits", "history", "desired", "reason"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_the_decision_and_its_reason(case, queue_signal, current, limits, history, desired, reason) -> None:
    decision = decide(queue_signal, current, limits, history, NOW)
    assert (decision.desired, decision.reason) == (desired, reason)
    assert decision.current == current
    assert decision.change == desired - current


def test_the_limits_default_to_the_design() -> None:
    assert DEFAULTS == ScaleLimits(1, 8, 1000, 100, 2, 1, 60.0, 300.0, None)


def test_a_decision_carries_the_present_sample_and_records_no_action() -> None:
    """Only the caller knows whether it acted: it says so with History.acted."""
    decision = decide(signal(ready=5000), 1, DEFAULTS, History(), NOW)
    assert decision.history == History((BacklogSample(NOW, 5000),))
    assert decision.history.acted(NOW).last_action_at == NOW


def test_the_history_keeps_the_window_and_the_sample_before_it() -> None:
    """What held at the window's start is the last sample before it; older ones are dropped."""
    history = History()
    for at in (0, 100, 200, 300, 400):
        history = history.observed(at, at, window=250)
    assert [sample.at for sample in history.samples] == [100, 200, 300, 400]
    assert history.spans(400, 250)
    assert not history.spans(400, 301)


def test_samples_after_now_are_dropped() -> None:
    """A clock that went back leaves no sample in the future."""
    history = History((BacklogSample(NOW + 50, 9),)).observed(NOW, 1, 300)
    assert history.samples == (BacklogSample(NOW, 1),)


def test_history_and_decision_are_immutable() -> None:
    decision = decide(signal(), 1, DEFAULTS, History(), NOW)
    assert isinstance(decision, Decision)
    with pytest.raises(FrozenInstanceError):
        decision.desired = 5  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        decision.history.last_action_at = 1.0  # type: ignore[misc]


def test_an_action_at_time_zero_still_starts_a_cooldown() -> None:
    """The clock may start at 0 (time.monotonic() in a fresh container): 0 is a time, not 'never'."""
    decision = decide(signal(ready=5000), 3, DEFAULTS, History().acted(0.0), 20.0)
    assert (decision.desired, decision.reason) == (
        3,
        "backlog 5,000 > 1,000, but cooling down (20 s of 60 s): hold (3)",
    )


def test_a_negative_worker_count_is_refused() -> None:
    with pytest.raises(ValueError, match="current_workers"):
        decide(signal(), -1, DEFAULTS, History(), NOW)


def run(backlog_at, seconds: float, limits: ScaleLimits, every: float = 15.0, start: int = 1):
    """Decide every ``every`` seconds for ``seconds``, acting on each decision.

    Returns:
        The (time, change) of every action, and the pool at the end.
    """
    history, current, actions = History(), start, []
    for step in range(int(seconds / every)):
        now = step * every
        backlog = backlog_at(now)
        decision = decide(signal(ready=backlog), current, limits, history, now)
        history = decision.history
        if decision.change:
            actions.append((now, decision.change))
            current = decision.desired
            history = history.acted(now)
    return actions, current


def most_actions_in_a_window(actions, window: float) -> int:
    return max(
        (sum(1 for at, _ in actions if start <= at < start + window) for start, _ in actions), default=0
    )


@pytest.mark.parametrize(
    ("high", "low", "period"),
    [
        pytest.param(2000, 0, 60, id="burst and idle every minute"),
        pytest.param(2000, 50, 120, id="burst and quiet every two minutes"),
        pytest.param(5000, 10, 240, id="long bursts"),
    ],
)
def test_a_sawtooth_grows_the_pool_and_never_flaps_it_down(high: int, low: int, period: float) -> None:
    """Given a load that swings above 1,000 and below 100 faster than the window,
    when the policy runs every 15 s for an hour, then the pool only grows (one
    step per cooldown, up to max) and never shrinks: every window holds a high sample."""
    limits = ScaleLimits(cooldown=60, window=300)
    actions, final = run(lambda now: high if now % period < period / 2 else low, 3600, limits)
    assert [change for _, change in actions] == [2, 2, 2, 1]
    assert final == limits.max_workers
    assert most_actions_in_a_window(actions, limits.window) <= limits.window / limits.cooldown


def test_a_sawtooth_between_the_thresholds_and_below_takes_no_action() -> None:
    """Given a load swinging between 50 and 500 (below, then between the thresholds),
    no window is all "down", so the pool of 4 stays 4."""
    actions, final = run(lambda now: 500 if now % 120 < 60 else 50, 3600, ScaleLimits(), start=4)
    assert actions == []
    assert final == 4


def test_after_the_load_stops_the_pool_shrinks_one_step_a_cooldown_once_the_window_is_quiet() -> None:
    """Given 8 workers and a load that ends at t=600, the first step down comes
    a whole window later, then one a cooldown, down to min."""
    limits = ScaleLimits(cooldown=60, window=300)
    actions, final = run(lambda now: 3000 if now < 600 else 0, 2400, limits, start=8)
    downs = [at for at, change in actions if change < 0]
    assert [change for _, change in actions] == [-1] * 7
    assert downs[0] >= 600 + limits.window
    assert all(later - earlier >= limits.cooldown for earlier, later in zip(downs, downs[1:], strict=False))
    assert final == limits.min_workers


# --- the signal the policy reads (workers.scaling.signal, pure)


class Counts:
    """A queue's counts as the management API reader returns them."""

    def __init__(self, name: str, ready: int = 0, unacked: int = 0, consumers: int = 0) -> None:
        self.name, self.ready, self.unacked, self.consumers = name, ready, unacked, consumers


def test_the_signal_is_the_work_queues_ready_plus_unacked_and_nothing_of_their_retries_dlqs_or_delays() -> (
    None
):
    counts = [
        Counts("orders", ready=50, unacked=2, consumers=1),
        Counts("orders.retry.1", ready=300),
        Counts("orders.dlq", ready=7),
        Counts("platform.delay.3", ready=40),
        Counts("platform.delayed.unroutable", ready=1),
        Counts("billing.events", ready=4, consumers=2),
        Counts("celery.pidbox", ready=1),
    ]
    signals = queue_signals(counts, ("orders", "payments", "billing.events"), delayed_due_in=12.0)
    assert signals == {
        "orders": QueueSignal("orders", 50, 2, 1, 12.0),
        "billing.events": QueueSignal("billing.events", 4, 0, 2, 12.0),
    }
    assert signals["orders"].due_backlog == 52


def test_reading_the_signal_asks_the_source_it_is_given() -> None:
    assert read_signals(lambda: [Counts("orders", ready=3)], ["orders"]) == {
        "orders": QueueSignal("orders", 3, 0, 0)
    }


def test_the_advice_the_metrics_export_carries_the_window_between_scrapes() -> None:
    """Two scrapes 300 s apart with 40 due and 3 consumers: the first can't know
    the window was quiet, the second can, and advises 2; no action is recorded."""
    settings = load_settings({})
    histories: dict[str, History] = {}
    quiet = [signal(ready=40, consumers=3)]
    first = desired_worker_samples(quiet, settings, histories, datetime.fromtimestamp(NOW, UTC))
    second = desired_worker_samples(quiet, settings, histories, datetime.fromtimestamp(NOW + 300, UTC))
    assert [(s.name, s.value, dict(s.labels)) for s in first + second] == [
        ("platform_scale_desired_workers", 3, {"queue": "orders"}),
        ("platform_scale_engine_running", 0, {"queue": "orders"}),
        ("platform_scale_desired_workers", 2, {"queue": "orders"}),
        ("platform_scale_engine_running", 0, {"queue": "orders"}),
    ]
    assert histories["orders"].last_action_at is None
