"""The autoscaler against a real RabbitMQ with real worker processes: ``celery -A config scale run --pool local``.

Each test runs the engine as its own process on the test's vhost, with
small thresholds, cooldowns and windows, and watches what an operator
would: the worker processes in the run folder (their pid files), the
engine's log lines, the state store's last decisions, the queues, and a
ledger the tasks write (``tests.scale_work`` records whether the broker
redelivered its message).

The management API's counts lag about 5 s, so every wait has a deadline
with that margin. The short form (inside ``make test``) uses a burst of
1,000 and 1,500 parked messages; ``make autoscale-check`` runs the issue's
sizes (a burst of 5,000, 5,000 parked) and the sawtooth
(``AUTOSCALE_FULL=1``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest

from tests.e2e.conftest import management_url
from tests.integration.test_scaling_signal import publish
from tests.support.autoscaler import Autoscaler, kill_leftover_workers
from tests.support.broker import Vhost
from tests.support.ledger import events
from tests.support.wait import wait_for
from tests.support.worker import ROOT
from workers.ops.scale_state import read_decisions

pytestmark = pytest.mark.broker

#: The issue's sizes, or the short form's.
FULL = os.environ.get("AUTOSCALE_FULL") == "1"
BURST = 5000 if FULL else 1000
PARKED = 5000 if FULL else 1500
#: Seconds one task takes: a burst takes one worker about 20 s (short form) to drain.
TASK_SECONDS = 0.005 if FULL else 0.02
#: The issue's bound on the time from a burst to a bigger pool.
GROWN_WITHIN = 15.0


def scale_env(platform_env: dict[str, str], tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The engine's environment: one-process workers, passes every second, small cooldown and window."""
    return {
        **platform_env,
        "PLATFORM_MANAGEMENT_URL": management_url(),
        "PLATFORM_RUN_DIR": str(tmp_path / "run"),
        "PLATFORM_CONCURRENCY": "1",
        "PLATFORM_SCALE_INTERVAL": "1",
        "PLATFORM_SCALE_MIN": "1",
        "PLATFORM_SCALE_MAX": "3",
        "PLATFORM_SCALE_UP_ABOVE": "100",
        "PLATFORM_SCALE_DOWN_BELOW": "10",
        "PLATFORM_SCALE_STEP_UP": "2",
        "PLATFORM_SCALE_STEP_DOWN": "1",
        "PLATFORM_SCALE_COOLDOWN": "2",
        "PLATFORM_SCALE_WINDOW": "3",
        **overrides,
    }


@pytest.fixture
def autoscaler(tmp_path: Path):
    """Start ``scale run`` with ``autoscaler(env, *args)``; stopped after, and no worker of it left running."""
    started: list[Autoscaler] = []

    def start(env: dict[str, str], *args: str) -> Autoscaler:
        scaler = Autoscaler(env, tmp_path, *args)
        started.append(scaler)
        return scaler.start()

    yield start
    for scaler in started:
        scaler.stop()
        leftovers = kill_leftover_workers(scaler.run_dir)
        assert not leftovers, f"workers outlived the autoscaler: {leftovers}"


def consumers(vhost: Vhost, queue: str) -> int:
    """Consumers of ``queue`` as the management API reports them."""
    try:
        return int(vhost.queue_info(queue).get("consumers") or 0)
    except urllib.error.HTTPError:  # not declared yet
        return 0


def ledger_starts(tmp_path: Path) -> list[tuple[str, str]]:
    """(task id, ``redelivered=0|1``) of every start the tasks recorded."""
    return [(entry.task_id, entry.extra) for entry in events(tmp_path / "ledger.txt", "start")]


def test_parked_retries_leave_the_pool_at_its_minimum_a_burst_grows_it_within_15_s_and_it_shrinks_back(
    vhost: Vhost, platform_env: dict[str, str], tmp_path: Path, client, autoscaler
) -> None:
    """Given the autoscaler on orders (min 1, max 3, up above 100, step 2) with
    its one worker ready, thousands of messages backing off in orders.retry.1..3
    leave the pool at 1 for 5 s of passes after the management API reports them.
    When a burst of due tasks arrives, within 15 s the run folder holds 3 workers
    of orders; every task runs once and none is redelivered; once the queue
    drains the pool goes back to 1 worker, one step at a time, and the state
    store's last decision says so. A worker killed with SIGKILL is started again
    and counted as a restart; ``scale status --json`` shows all of it."""
    scaler = autoscaler(scale_env(platform_env, tmp_path), "--queue", "orders")
    wait_for(lambda: consumers(vhost, "orders") == 1, 60, 0.5, "the first worker to consume orders")
    for tier in (1, 2, 3):
        publish(vhost, f"orders.retry.{tier}", PARKED // 3)
    wait_for(
        lambda: (
            sum(int(vhost.queue_info(f"orders.retry.{tier}").get("messages") or 0) for tier in (1, 2, 3))
            == PARKED // 3 * 3
        ),
        30,
        0.5,
        "the management API to report the parked messages",
    )
    state_url = platform_env["PLATFORM_STATE_URL"]
    seen_at = time.time()
    wait_for(lambda: read_decisions(state_url)["orders"].report.at > seen_at + 5, 30, 0.5, "5 s of passes")
    record = read_decisions(state_url)["orders"]
    assert (record.report.workers, record.report.desired, record.report.actions_up) == (1, 1, 1), record
    assert len(scaler.pids("orders")) == 1

    burst_at = time.monotonic()
    ids = {
        client.send_task("tests.scale_work", args=(TASK_SECONDS,), queue="orders").id for _ in range(BURST)
    }
    sent_in = time.monotonic() - burst_at
    # Within 15 s of the burst's first task (publishing it may take part of them).
    wait_for(
        lambda: len(scaler.pids("orders")) == 3,
        max(GROWN_WITHIN - sent_in, 0.0),
        0.2,
        lambda: f"3 workers within {GROWN_WITHIN} s; engine log:\n{scaler.log()[-2000:]}",
    )
    grown_in = time.monotonic() - burst_at
    assert grown_in <= GROWN_WITHIN + 0.5, grown_in

    wait_for(lambda: {task for task, _ in ledger_starts(tmp_path)} >= ids, 180, 0.5, "every task to start")
    wait_for(
        lambda: len(scaler.pids("orders")) == 1,
        90,
        0.5,
        lambda: f"the pool back at 1; engine log:\n{scaler.log()[-2000:]}",
    )

    starts = ledger_starts(tmp_path)
    assert len(starts) == len(ids), "some task started twice"
    assert [extra for _, extra in starts if extra != "redelivered=0"] == []
    changes = [(old, new) for _, old, new in scaler.actions("orders")]
    assert changes == [(0, 1), (1, 3), (3, 2), (2, 1)], changes
    record = wait_for(lambda: read_decisions(state_url).get("orders"), 10)
    assert (record.report.workers, record.report.desired, record.pool) == (1, 1, "local")
    assert (record.report.actions_up, record.report.actions_down) == (2, 2)
    print(f"burst of {BURST} (sent in {sent_in:.1f} s): 3 workers {grown_in:.1f} s after its first task")

    (survivor,) = scaler.pids("orders")
    os.killpg(survivor, signal.SIGKILL)
    wait_for(lambda: scaler.pids("orders") not in ([], [survivor]), 30, 0.2, "the dead worker to be replaced")
    wait_for(lambda: read_decisions(state_url)["orders"].restarts == 1, 10, 0.2, "the restart to be counted")
    assert len(scaler.pids("orders")) == 1
    assert read_decisions(state_url)["orders"].report.actions_up == 2, "a restart is not a scaling action"

    status = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "scale", "status", "--json"],
        env=scaler.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    rows = {row["queue"]: row for row in json.loads(status.stdout)}
    assert (rows["orders"]["workers"], rows["orders"]["desired"], rows["orders"]["engine_running"]) == (
        1,
        1,
        True,
    )
    assert (rows["orders"]["restarts"], rows["orders"]["source"]) == (1, "engine")
    assert rows["payments"]["source"] == "advice" and rows["payments"]["workers"] is None


@pytest.mark.skipif(not FULL, reason="the long form: make autoscale-check (AUTOSCALE_FULL=1)")
def test_a_poison_storm_grows_the_pool_by_one_step_at_most(
    vhost: Vhost, platform_env: dict[str, str], tmp_path: Path, client, autoscaler
) -> None:
    """Given the autoscaler on orders (up above 5, step 1, cooldown 30 s), when a storm
    of tasks that kill their worker's pool process arrives, the pool grows by one
    step at most while every poison message goes to orders.dlq (delivery limit),
    and no worker main process had to be restarted."""
    env = scale_env(
        platform_env,
        tmp_path,
        PLATFORM_SCALE_UP_ABOVE="5",
        PLATFORM_SCALE_DOWN_BELOW="1",
        PLATFORM_SCALE_STEP_UP="1",
        PLATFORM_SCALE_MAX="4",
        PLATFORM_SCALE_COOLDOWN="30",
    )
    scaler = autoscaler(env, "--queue", "orders")
    wait_for(lambda: consumers(vhost, "orders") == 1, 60, 0.5, "the first worker to consume orders")
    poison = [client.send_task("tests.die", queue="orders").id for _ in range(8)]
    sizes = []

    def dead_lettered() -> bool:
        sizes.append(len(scaler.pids("orders")))
        return vhost.depth("orders.dlq") >= len(poison)

    wait_for(
        dead_lettered, 120, 0.5, lambda: f"the poison in orders.dlq; engine log:\n{scaler.log()[-2000:]}"
    )
    assert max(sizes) <= 2, sizes
    assert [(old, new) for _, old, new in scaler.actions("orders")][1:] in ([], [(1, 2)])
    assert read_decisions(platform_env["PLATFORM_STATE_URL"])["orders"].restarts == 0


@pytest.mark.skipif(not FULL, reason="the long form: make autoscale-check (AUTOSCALE_FULL=1)")
def test_scale_in_under_a_sawtooth_load_redelivers_nothing_and_keeps_the_cooldown(
    vhost: Vhost, platform_env: dict[str, str], tmp_path: Path, client, autoscaler
) -> None:
    """Given the autoscaler on orders (cooldown 3 s, window 3 s), when bursts of 400
    tasks alternate with quiet spells four times, the pool grows and shrinks while
    tasks run, every task starts exactly once and none is redelivered (no busy
    worker was stopped), and no two actions came closer than the cooldown."""
    env = scale_env(platform_env, tmp_path, PLATFORM_SCALE_COOLDOWN="3", PLATFORM_SCALE_WINDOW="3")
    scaler = autoscaler(env, "--queue", "orders")
    wait_for(lambda: consumers(vhost, "orders") == 1, 60, 0.5, "the first worker to consume orders")
    ids: set[str] = set()

    def scale_ins() -> int:
        return sum(1 for _, old, new in scaler.actions("orders") if new < old)

    def burst_while_shrinking(ids: set[str]) -> None:
        before = scale_ins()
        ids |= {client.send_task("tests.scale_work", args=(0.02,), queue="orders").id for _ in range(400)}
        wait_for(lambda: {task for task, _ in ledger_starts(tmp_path)} >= ids, 120, 0.5, "the burst to start")
        # The next burst comes as soon as a worker is retiring.
        wait_for(lambda: scale_ins() > before, 60, 0.2, lambda: f"a scale-in; log:\n{scaler.log()[-2000:]}")

    for _ in range(4):
        burst_while_shrinking(ids)
    wait_for(
        lambda: len(events(tmp_path / "ledger.txt", "done")) >= len(ids), 120, 0.5, "every task to finish"
    )

    starts = ledger_starts(tmp_path)
    assert len(starts) == len(ids) and {task for task, _ in starts} == ids
    assert [extra for _, extra in starts if extra != "redelivered=0"] == []
    actions = scaler.actions("orders")
    assert any(new < old for _, old, new in actions), actions
    times = [time.mktime(time.strptime(at.split(",")[0], "%Y-%m-%d %H:%M:%S")) for at, _, _ in actions[1:]]
    assert all(later - earlier >= 3 - 1 for earlier, later in zip(times, times[1:], strict=False)), actions


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("PLATFORM_SCALE_MIN", "5", "PLATFORM_SCALE_MIN"),
        ("PLATFORM_SCALE_COOLDOWN", "-1", "PLATFORM_SCALE_COOLDOWN"),
    ],
)
def test_bad_scale_settings_stop_scale_run_with_one_line_and_exit_code_2(
    platform_env: dict[str, str], tmp_path: Path, setting: str, value: str, says: str
) -> None:
    """Given min above max (5 > 3) or a negative cooldown, ``scale run`` prints one
    line naming the setting and exits 2, starting no worker."""
    env = scale_env(platform_env, tmp_path, **{setting: value})
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "scale", "run"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, lines
    assert not list((tmp_path / "run").glob("*.pid"))
