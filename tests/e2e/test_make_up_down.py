"""``make up`` and ``make down``: a local platform in a run folder, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import SERVICE_QUEUES, http_status, is_running, processes_marked_with, run_make
from tests.support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.broker]

#: The subscriber queues of config/subscriptions.toml, which the Makefile uses by default.
EVENT_QUEUES = ("email.events", "analytics.events", "inventory.events", "payments.events", "orders.events")


def read_pids(run_dir: Path) -> dict[str, int]:
    return {path.stem: int(path.read_text().strip()) for path in sorted(run_dir.glob("*.pid"))}


def test_make_up_starts_a_worker_per_queue_and_flower_and_make_down_leaves_nothing_running(make_cluster):
    """Given a fresh vhost and run folder, `make up` starts one worker per work queue
    (the default queue too), one per subscribing service's event queue (the seed's
    subscriptions file) and Flower (pid and log files in the run folder); a second
    `make up` starts no duplicates; `make down` stops every recorded process and
    nothing carrying the run folder remains."""
    env = make_cluster
    run_dir = Path(env["PLATFORM_RUN_DIR"])
    flower_url = f"http://127.0.0.1:{env['FLOWER_PORT']}"
    queues = [*SERVICE_QUEUES.split(","), "default", *EVENT_QUEUES]
    expected = {f"worker-{queue}" for queue in queues} | {"flower"}

    up = run_make("up", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    pids = read_pids(run_dir)
    assert set(pids) == expected
    assert all(is_running(pid) for pid in pids.values()), pids
    assert {path.stem for path in run_dir.glob("*.log")} == expected
    assert http_status(f"{flower_url}/healthcheck") == 200
    assert flower_url in up.stdout and str(run_dir.resolve()) in up.stdout
    for queue in queues:
        log = (run_dir / f"worker-{queue}.log").read_text()
        # The default layout runs PLATFORM_CONCURRENCY solo processes per queue: <queue>-<n>@host.
        processes = range(1, int(env["PLATFORM_CONCURRENCY"]) + 1)
        assert all(f"{queue}-{n}@" in log for n in processes) and log.count(" ready.") >= len(processes), log[
            -2000:
        ]

    again = run_make("up", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert read_pids(run_dir) == pids, "a second `make up` must not start anything new"
    assert len(processes_marked_with(run_dir)) >= len(expected)

    down = run_make("down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not list(run_dir.glob("*.pid")), "make down removes the pid files"
    wait_for(
        lambda: not any(is_running(pid) for pid in pids.values()),
        timeout=30,
        message=lambda: f"recorded processes to exit: {[p for p in pids.values() if is_running(p)]}",
    )
    wait_for(
        lambda: not processes_marked_with(run_dir),
        timeout=30,
        message=lambda: f"no process with PLATFORM_RUN_DIR={run_dir}: {processes_marked_with(run_dir)}",
    )
    assert http_status(f"{flower_url}/healthcheck") is None

    idle = run_make("down", env=env)
    assert idle.returncode == 0 and "nothing" in idle.stdout
