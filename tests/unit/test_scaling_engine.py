"""The scaling engine's loop with a fake pool and fake broker counts (pure logic; the real pool is tested in integration).

The fakes stand for what can't be cheap here: the management API's counts
(:class:`Counts`) and a pool that only remembers its size (:class:`SizedPool`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import pytest

from workers.scaling.engine import Engine, QueueReport
from workers.scaling.limits import ScaleLimits
from workers.scaling.pool import POOLS, UnknownPool, make_pool
from workers.scaling.signal import SignalUnavailable

LIMITS = ScaleLimits(min_workers=1, max_workers=4, up_above=100, down_below=10, cooldown=10, window=20)


@dataclass(frozen=True)
class Count:
    name: str
    ready: int
    unacked: int = 0
    consumers: int = 0


@dataclass
class Counts:
    """What the management API would report; ``down`` makes it not answer."""

    ready: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, int] = field(default_factory=dict)
    down: bool = False

    def __call__(self) -> list[Count]:
        if self.down:
            raise SignalUnavailable("no scaling signal: management API at 127.0.0.1:15672: refused")
        return [Count(name, ready, 0, self.consumers.get(name, 0)) for name, ready in self.ready.items()]


@dataclass
class SizedPool:
    """A pool that only keeps each queue's size and the resizes asked of it."""

    sizes: dict[str, int] = field(default_factory=dict)
    asked: list[tuple[str, int]] = field(default_factory=list)

    def workers(self, queue: str) -> int:
        return self.sizes.get(queue, 0)

    def resize(self, queue: str, desired: int, reason: str) -> None:
        self.asked.append((queue, desired))
        self.sizes[queue] = desired


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(counts: Counts, pool: SizedPool | None, clock: Clock, **options) -> Engine:
    return Engine(counts, ["orders"], pool, {"orders": LIMITS}, clock=clock, wall_clock=clock, **options)


def test_an_empty_pool_is_brought_to_its_minimum_and_a_burst_grows_it_after_the_cooldown() -> None:
    """Given no worker and nothing due, the first pass starts the minimum (1); a
    backlog of 500 right after waits out the 10 s cooldown, then adds 2."""
    counts, pool, clock = Counts({"orders": 0}), SizedPool(), Clock()
    scaler = engine(counts, pool, clock)

    first = scaler.step()
    counts.ready["orders"] = 500
    clock.now += 5
    cooling = scaler.step()
    clock.now += 6
    grown = scaler.step()

    assert pool.asked == [("orders", 1), ("orders", 3)]
    assert [(r.workers, r.desired, r.acted) for r in (*first, *cooling, *grown)] == [
        (0, 1, True),
        (1, 1, False),
        (1, 3, True),
    ]
    assert "cooling down" in cooling[0].reason
    assert (grown[0].actions_up, grown[0].actions_down) == (2, 0)


def test_a_broker_that_does_not_answer_holds_the_pool_and_logs_one_line(caplog) -> None:
    """Given a pool of 3 and a backlog of 0 for longer than the window, while the
    management API does not answer, nothing is resized and one warning is logged
    for the whole outage; when it answers again, scaling resumes."""
    counts, pool, clock = Counts({"orders": 0}, down=True), SizedPool({"orders": 3}), Clock()
    scaler = engine(counts, pool, clock)
    caplog.set_level(logging.INFO, logger="workers.scaling.engine")

    for _ in range(5):
        assert scaler.step() == []
        clock.now += 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    counts.down = False
    scaler.step()

    assert pool.asked == []
    assert len(warnings) == 1 and "holding" in warnings[0].getMessage()
    assert "answers again" in caplog.records[-1].getMessage()


def test_the_pool_shrinks_one_step_only_after_a_whole_window_of_low_backlog() -> None:
    """Given 3 workers and a backlog that falls to 0, the pool keeps 3 until the
    20 s window is all low (the pass at 20 s), then goes to 2, and 10 s later (the cooldown) to 1."""
    counts, pool, clock = Counts({"orders": 0}), SizedPool({"orders": 3}), Clock()
    scaler = engine(counts, pool, clock)

    sizes = []
    for _ in range(9):
        scaler.step()
        sizes.append(pool.sizes["orders"])
        clock.now += 5

    assert sizes == [3, 3, 3, 3, 2, 2, 1, 1, 1]


def test_a_dry_run_prints_decisions_from_the_consumers_and_never_resizes() -> None:
    """Given a dry run and a queue with 1 consumer and 500 due, each pass prints
    what it would do and nothing records an action, so the cooldown never starts."""
    counts, clock = Counts({"orders": 500}, {"orders": 1}), Clock()
    printed: list[str] = []
    scaler = engine(counts, None, clock, dry_run=True, echo=printed.append)

    reports = [*scaler.step(), *scaler.step()]

    assert [(r.workers, r.desired, r.acted, r.dry_run) for r in reports] == [(1, 3, False, True)] * 2
    assert printed == ["scale orders (dry run): backlog 500 > 100: +2 (1 -> 3)"] * 2


def test_a_queue_the_broker_does_not_have_yet_gets_its_minimum() -> None:
    """Given a fresh vhost (no orders queue yet), the pool gets its 1 worker, which declares it."""
    pool = SizedPool()
    reports = engine(Counts({}), pool, Clock()).step()
    assert pool.asked == [("orders", 1)] and reports[0].backlog == 0


def test_each_pass_reports_every_queue_and_run_stops_when_told() -> None:
    """Given a reporter, ``run`` hands it one report per queue each pass and stops after the passes asked."""
    passes: list[list[QueueReport]] = []
    scaler = engine(Counts({"orders": 0}), SizedPool(), Clock(), report=lambda r: passes.append(list(r)))
    scaler.run(0.0, threading.Event(), passes=3)
    assert [[r.queue for r in reports] for reports in passes] == [["orders"]] * 3


def test_an_engine_that_acts_needs_a_pool_and_an_unknown_pool_name_is_refused() -> None:
    """Without a pool only a dry run is possible; ``make_pool`` names the pools there are."""
    with pytest.raises(ValueError, match="needs a pool"):
        engine(Counts(), None, Clock())
    with pytest.raises(UnknownPool, match="pools: compose, local"):
        make_pool("kubernetes", None)  # type: ignore[arg-type]
    assert "local" in POOLS


def test_the_metrics_export_the_engines_live_decision_and_its_pool_from_the_state_store(tmp_path) -> None:
    """Given an engine's pass written to the state store (3 workers, desired 5, 2
    actions up, 1 restart), the metrics export desired 5 from the engine (not the
    policy's advice), the pool's size, the actions by direction and the restarts;
    a record older than the live bound is advice again."""
    from datetime import UTC, datetime

    from config.settings import load_settings
    from workers.ops.metrics import desired_worker_samples, render
    from workers.ops.scale_state import live_decisions, write_decisions
    from workers.scaling.signal import QueueSignal

    state_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    report = QueueReport("orders", 4000, 3, 5, "backlog 4,000 > 1,000: +2 (3 -> 5)", True, 1000.0, 2, 0)
    write_decisions(state_url, [report], "local", {"orders": 1})
    signals = [QueueSignal("orders", 4000, 0, 3)]
    settings = load_settings({})

    live = live_decisions(state_url, interval=2.0, now=1005.0)
    text = render(desired_worker_samples(signals, settings, {}, datetime.now(UTC), live))
    stale = live_decisions(state_url, interval=2.0, now=1100.0)

    assert 'platform_scale_desired_workers{queue="orders"} 5' in text
    assert 'platform_scale_engine_running{queue="orders"} 1' in text
    assert 'platform_scale_workers{queue="orders"} 3' in text
    assert 'platform_scale_actions_total{direction="up",queue="orders"} 2' in text
    assert 'platform_scale_actions_total{direction="down",queue="orders"} 0' in text
    assert 'platform_scale_worker_restarts_total{queue="orders"} 1' in text
    assert stale == {}


def test_flowers_navbar_gains_a_scaling_item_right_after_sagas() -> None:
    """The installed Flower's navbar links to /scale once, after Events and Sagas; without Sagas it is left as it is."""
    from workers.ops.flower.loader import (
        FLOWER_TEMPLATES,
        navbar_with_dlq_link,
        navbar_with_events_link,
        navbar_with_sagas_link,
        navbar_with_scale_link,
    )

    source = (FLOWER_TEMPLATES / "navbar.html").read_text()
    navbar = navbar_with_scale_link(
        navbar_with_sagas_link(navbar_with_events_link(navbar_with_dlq_link(source)))
    )
    assert navbar.count("reverse_url('scale')") == 1
    assert navbar.index(">Events</a>") < navbar.index(">Sagas</a>") < navbar.index(">Scaling</a>")
    assert navbar_with_scale_link("<nav></nav>") == "<nav></nav>"


def test_a_resize_that_fails_is_logged_not_counted_and_tried_again_next_pass(caplog) -> None:
    """Given a pool that can't start a process (OSError) on the first resize, the
    pass logs one warning and records no action, so the next pass tries again at once."""

    class Failing(SizedPool):
        def resize(self, queue: str, desired: int, reason: str) -> None:
            if not self.asked:
                self.asked.append((queue, -1))
                raise OSError("[Errno 12] Cannot allocate memory")
            super().resize(queue, desired, reason)

    pool, clock = Failing(), Clock()
    scaler = engine(Counts({"orders": 0}), pool, clock)
    caplog.set_level(logging.WARNING, logger="workers.scaling.engine")

    first = scaler.step()
    clock.now += 1
    second = scaler.step()

    assert [r.acted for r in (*first, *second)] == [False, True]
    assert pool.sizes == {"orders": 1}
    assert "resize to 1 failed" in caplog.records[0].getMessage()


@dataclass
class DyingPool(SizedPool):
    """A pool whose workers die: ``restarts`` counts those it started again, as the local pool does."""

    restarts: dict[str, int] = field(default_factory=dict)


def test_a_pool_whose_workers_keep_dying_does_not_grow_on_the_poison_they_leave_behind() -> None:
    """Given 500 due (above the threshold of 100) while two workers died within
    the 20 s window, the engine holds the pool and says poison is suspected;
    once the deaths are older than the window, the same backlog grows it."""
    counts, pool, clock = Counts({"orders": 500}), DyingPool({"orders": 1}), Clock()
    scaler = engine(counts, pool, clock)
    scaler.step()  # nothing died yet: grows at once
    assert pool.asked == [("orders", 3)]

    clock.now += 11  # past the cooldown; two workers died since the last pass
    pool.restarts["orders"] = 2
    [report] = scaler.step()
    assert pool.asked == [("orders", 3)]
    assert "2 worker deaths within 20 s (poison suspected)" in report.reason

    clock.now += 21  # the deaths leave the window
    [report] = scaler.step()
    assert pool.asked == [("orders", 3), ("orders", 4)], report.reason


def test_one_death_in_a_burst_does_not_stop_the_pool_growing() -> None:
    counts, pool, clock = Counts({"orders": 500}), DyingPool({"orders": 1}), Clock()
    scaler = engine(counts, pool, clock)
    pool.restarts["orders"] = 1
    scaler.step()
    assert pool.asked == [("orders", 3)]
