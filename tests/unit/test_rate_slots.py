"""Rate-limit slots (workers/delivery/rates.py): who runs now, who waits until when.

Pure arithmetic on unix times; a worker's node name stands for the worker.
"""

from __future__ import annotations

import math

import pytest

from workers.delivery.rates import EARLY_TOLERANCE, STALE_AFTER, RateSchedules, Slot

WORKER = "w1@host"
OTHER = "w2@host"
T0 = 1_000_000.0


def schedules(**rates: float) -> RateSchedules:
    found = RateSchedules()
    found.set_rates({name.replace("_", "."): per_second for name, per_second in rates.items()})
    return found


def test_an_unlimited_task_always_runs_now() -> None:
    limits = schedules(tests_limited=2.0)
    assert [limits.admit("tests.other", T0, WORKER) for _ in range(5)] == [None] * 5


def test_a_burst_gets_one_slot_each_an_interval_apart_the_first_runs_now() -> None:
    """Given 2/s and 5 messages arriving together, the first runs now and the
    k-th waits for T0 + k * 0.5 (a burst of one, like Celery's bucket)."""
    limits = schedules(tests_limited=2.0)
    admitted = [limits.admit("tests.limited", T0, WORKER) for _ in range(5)]
    assert admitted[0] is None
    assert admitted[1:] == [Slot(WORKER, T0 + 0.5 * k) for k in range(1, 5)]


def test_a_message_back_at_its_slot_runs_and_takes_no_new_slot() -> None:
    """Given the 1st and 2nd messages of a burst, when the 2nd comes back at its
    slot it runs (no republish spin), and the next newcomer gets the slot after
    the ones already given."""
    limits = schedules(tests_limited=2.0)
    assert limits.admit("tests.limited", T0, WORKER) is None
    second = limits.admit("tests.limited", T0, WORKER)
    third = limits.admit("tests.limited", T0, WORKER)
    assert second == Slot(WORKER, T0 + 0.5) and third == Slot(WORKER, T0 + 1.0)
    assert limits.admit("tests.limited", T0 + 0.5 + 0.003, WORKER, second) is None
    assert limits.admit("tests.limited", T0 + 0.6, WORKER) == Slot(WORKER, T0 + 1.5)


@pytest.mark.parametrize(
    ("arrives", "expected"),
    [
        pytest.param(T0 + 2.0 - EARLY_TOLERANCE, None, id="within the resolution before its slot: runs"),
        pytest.param(T0 + 2.0 + STALE_AFTER, None, id="late but not stale: runs"),
        pytest.param(T0 + 1.0, Slot(WORKER, T0 + 2.0), id="a second early: waits again for the same slot"),
    ],
)
def test_a_returning_message_runs_at_its_slot_or_waits_again_for_the_same_one(
    arrives: float, expected: Slot | None
) -> None:
    limits = schedules(tests_limited=1.0)
    limits.admit("tests.limited", T0, WORKER)
    assert limits.admit("tests.limited", arrives, WORKER, Slot(WORKER, T0 + 2.0)) == expected


@pytest.mark.parametrize(
    "slot",
    [
        pytest.param(Slot(OTHER, T0), id="a slot another worker gave"),
        pytest.param(Slot(WORKER, T0 - STALE_AFTER - 1), id="a stale slot (a replayed copy)"),
    ],
)
def test_a_slot_this_worker_did_not_give_or_that_is_stale_counts_as_a_new_arrival(slot: Slot) -> None:
    limits = schedules(tests_limited=2.0)
    assert limits.admit("tests.limited", T0, WORKER) is None
    assert limits.admit("tests.limited", T0, WORKER, slot) == Slot(WORKER, T0 + 0.5)


def test_a_message_that_ran_at_its_slot_keeps_a_restarted_worker_from_running_the_next_too_soon() -> None:
    """A restarted worker has forgotten its schedule: a message back at the slot
    it was given before the restart moves the schedule past that slot."""
    limits = schedules(tests_limited=2.0)
    assert limits.admit("tests.limited", T0 + 3.0, WORKER, Slot(WORKER, T0 + 3.0)) is None
    assert limits.admit("tests.limited", T0 + 3.1, WORKER) == Slot(WORKER, T0 + 3.5)


def test_after_a_quiet_spell_the_next_message_runs_at_once() -> None:
    limits = schedules(tests_limited=2.0)
    limits.admit("tests.limited", T0, WORKER)
    limits.admit("tests.limited", T0, WORKER)
    assert limits.admit("tests.limited", T0 + 10, WORKER) is None


def test_sustained_overload_gives_each_waiting_message_its_own_slot_at_the_rate() -> None:
    """Given 10/s and 1,000 messages arriving over one second, every slot is
    distinct, 0.1 s apart, and none is before its arrival."""
    limits = schedules(tests_limited=10.0)
    starts = []
    for index in range(1000):
        now = T0 + index / 1000
        slot = limits.admit("tests.limited", now, WORKER)
        starts.append(now if slot is None else slot.at)
        assert slot is None or slot.at >= now
    assert all(math.isclose(b - a, 0.1) for a, b in zip(starts, starts[1:], strict=False))


def test_a_changed_rate_starts_a_fresh_schedule_an_unchanged_one_keeps_its_own() -> None:
    """As Celery's reset_rate_limits makes new buckets: after ``celery control
    rate_limit`` a task with a new rate starts afresh; others keep their slots."""
    limits = schedules(tests_limited=1 / 60, tests_kept=1.0)
    limits.admit("tests.limited", T0, WORKER)
    limits.admit("tests.kept", T0, WORKER)
    assert limits.admit("tests.limited", T0, WORKER) == Slot(WORKER, T0 + 60)

    limits.set_rates({"tests.limited": 100.0, "tests.kept": 1.0})

    assert limits.admit("tests.limited", T0 + 1, WORKER) is None
    assert limits.admit("tests.kept", T0 + 0.5, WORKER) == Slot(WORKER, T0 + 1.0)
    assert limits.interval("tests.limited") == pytest.approx(0.01)


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    limits = schedules(tests_limited=2.0)
    limits.set_rates({"tests.limited": 0})
    assert limits.interval("tests.limited") is None
    assert [limits.admit("tests.limited", T0, WORKER) for _ in range(3)] == [None] * 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("w1@host 1000000.500000", Slot(WORKER, T0 + 0.5), id="what a worker writes"),
        pytest.param(b"w1@host 1000000.5", Slot(WORKER, T0 + 0.5), id="bytes"),
        pytest.param("w1@my host 5", Slot("w1@my host", 5.0), id="a name with a space"),
        pytest.param("1000000.5", None, id="no worker"),
        pytest.param("w1@host soon", None, id="no time"),
        pytest.param("w1@host nan", None, id="not a finite time"),
        pytest.param(42, None, id="not text"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_a_slot_header_is_read_back_or_ignored(value: object, expected: Slot | None) -> None:
    assert Slot.parse(value) == expected


def test_a_slot_header_round_trips() -> None:
    slot = Slot(WORKER, T0 + 0.123456)
    assert Slot.parse(slot.header()) == slot


def test_the_early_tolerance_is_the_delay_levels_resolution() -> None:
    from workers.delivery.delays import RESOLUTION_SECONDS
    from workers.delivery.rates import EARLY_TOLERANCE

    assert EARLY_TOLERANCE == RESOLUTION_SECONDS
