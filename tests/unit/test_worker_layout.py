"""The worker layout's command lines, the poison count with a prefetch window, and refused time limits (pure)."""

from __future__ import annotations

import pytest

from config.layout import node_name, prefetch_window, worker_command, worker_processes
from config.settings import load_settings
from workers.delivery.options import check_time_limits
from workers.delivery.starts import deliveries_taken
from workers.errors import UnsupportedOption


def test_the_default_layout_runs_two_solo_processes_per_queue_each_holding_two_messages():
    """Given no layout settings, a queue gets PLATFORM_CONCURRENCY (2) solo
    processes with their own node names and a prefetch window of 2."""
    settings = load_settings({})
    assert worker_processes(settings) == 2
    first, second = (worker_command("orders", settings, index, python="py") for index in (1, 2))
    assert first[:6] == ["py", "-m", "celery", "-A", "config", "worker"]
    for command, name in ((first, "orders-1@%h"), (second, "orders-2@%h")):
        assert command[command.index("-P") + 1] == "solo"
        assert command[command.index("-c") + 1] == "1"
        assert command[command.index("--prefetch-multiplier") + 1] == "2"
        assert command[command.index("-n") + 1] == name
        assert command[command.index("-Q") + 1] == "orders"


@pytest.mark.parametrize("layout", ["prefork", "threads"])
def test_the_other_layouts_run_one_worker_per_queue_with_one_message_per_slot(layout: str):
    """Given prefork or threads, a queue gets one worker with PLATFORM_CONCURRENCY slots, prefetch 1 each."""
    settings = load_settings({"PLATFORM_WORKER_LAYOUT": layout, "PLATFORM_CONCURRENCY": "3"})
    assert worker_processes(settings) == 1
    command = worker_command("email", settings, extra=("--without-gossip",))
    assert command[command.index("-P") + 1] == layout
    assert command[command.index("-c") + 1] == "3"
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    assert node_name("email", settings) == "email@%h"
    assert command[-1] == "--without-gossip"


def test_an_explicit_prefetch_window_wins_and_an_index_out_of_range_is_refused():
    """PLATFORM_WORKER_PREFETCH overrides the layout's window; a third process of two does not exist."""
    settings = load_settings({"PLATFORM_WORKER_PREFETCH": "5"})
    assert prefetch_window(settings) == 5
    with pytest.raises(ValueError, match="2 worker processes, not 3"):
        worker_command("orders", settings, 3)


@pytest.mark.parametrize(
    ("returns", "recorded", "counted"),
    [
        (0, 0, 0),  # a first delivery
        (3, 3, 3),  # killed mid-task three times: all count
        (3, 1, 1),  # two of the returns only waited in a dead worker's window
        (1, 0, 0),  # returned once without ever being taken
        (2, 3, 2),  # a take recorded just before an ack the broker saw is not a return
    ],
)
def test_only_deliveries_a_worker_took_count_towards_the_poison_limit(
    returns: int, recorded: int, counted: int
):
    assert deliveries_taken(returns, recorded) == counted


class _Task:
    name = "tests.slow"

    def __init__(self, time_limit: float | None = None, soft_time_limit: float | None = None) -> None:
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit


@pytest.mark.parametrize("limits", [{"time_limit": 5}, {"soft_time_limit": 2}])
def test_a_time_limit_is_refused_under_the_threads_layout_and_kept_under_the_others(limits: dict[str, float]):
    """Celery's thread pool can't stop a task: its layout refuses a time limit at declaration."""
    task = _Task(**limits)
    with pytest.raises(UnsupportedOption, match="PLATFORM_WORKER_LAYOUT=threads"):
        check_time_limits(task, task.name, "threads")
    check_time_limits(task, task.name, "solo")
    check_time_limits(task, task.name, "prefork")


def test_takes_are_counted_per_task_id_across_the_files_of_every_process(tmp_path):
    """Given two ledgers writing in one folder (two worker processes), a task id's takes are
    counted across both files, and a rotated-out segment older than the previous one is gone."""
    from workers.delivery import starts

    first, second = starts.TakeLedger(tmp_path), starts.TakeLedger(tmp_path)
    first.take("a")
    first.take("b")
    second._segment = 7  # as if the other process had rotated before
    second.take("a")
    assert first.taken("a") == 2
    assert first.taken("b") == 1
    assert first.taken("c") == 0
    assert first.taken("a\nb") == 0  # whole lines only


def test_the_takes_live_beside_a_sqlite_state_store_or_in_the_run_folder():
    from pathlib import Path

    from workers.delivery.starts import takes_folder

    assert takes_folder("sqlite:///var/lib/p/state.sqlite3", ".run") == Path("var/lib/p/takes")
    assert takes_folder("postgresql://db/p", "/srv/run") == Path("/srv/run/takes")
