"""``make up AUTOSCALE=1``, Flower's Scaling page in a real headless Chromium, the burst tour, and ``make down``.

The autoscaler runs the pools (each at its minimum of one worker) instead of
``make up``'s fixed workers; Flower runs as ``make up`` starts it. The page
must show what the engine decided; the burst tour (``make demo BURST=1``'s
second part) must see the pool grow and come back; ``make down`` must leave
nothing running.
Screenshots land in results/e2e/<test>/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import is_running, processes_marked_with, run_make
from tests.support.wait import wait_for
from tests.support.worker import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.broker]


def test_make_up_with_autoscale_runs_the_pools_flower_shows_their_sizes_and_make_down_stops_everything(
    make_cluster, browser, screenshot_dir: Path
) -> None:
    """Given ``make up AUTOSCALE=1`` on orders only, the run folder holds the
    autoscaler, Flower and one worker of each queue (orders-1, default-1); the
    Scaling page (linked from Flower's navbar) shows orders with pool size 1,
    desired 1 and the engine's last decision; ``make down`` stops all of them
    and nothing carrying the run folder's mark is left. In between, the burst
    tour sends 1,500 tasks of 10 ms (15 s for one worker, so the pool grows well before they drain): its timeline shows the pool growing, every
    task completes, the pool is back at 1 and the broker redelivered nothing."""
    env = {
        **make_cluster,
        "PLATFORM_QUEUES": "orders",
        "PLATFORM_TASK_MODULES": "tests.support.tasks,tasks.analytics",
        "PLATFORM_SUBSCRIPTIONS_FILE": "",
        "PLATFORM_SCALE_INTERVAL": "1",
        # small enough for the tour to grow and shrink the pool within seconds
        "PLATFORM_SCALE_UP_ABOVE": "200",
        "PLATFORM_SCALE_DOWN_BELOW": "50",
        "PLATFORM_SCALE_COOLDOWN": "2",
        "PLATFORM_SCALE_WINDOW": "3",
        "PLATFORM_SCALE_MAX": "3",
        "AUTOSCALE": "1",
    }
    run_dir = Path(env["PLATFORM_RUN_DIR"])
    flower_url = f"http://127.0.0.1:{env['FLOWER_PORT']}"

    up = run_make("up", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    pids = {path.stem: int(path.read_text()) for path in run_dir.glob("*.pid")}
    assert set(pids) == {"autoscale", "flower", "worker-orders-1", "worker-default-1"}, pids
    assert " ready." in (run_dir / "worker-orders-1.log").read_text()

    page = browser.new_page()
    try:
        page.goto(f"{flower_url}/dlq", wait_until="load")
        page.click("#nav-scale")
        page.wait_for_url(f"{flower_url}/scale")
        orders = page.locator("#scale-row-orders")
        assert orders.locator(".scale-workers").inner_text().strip() == "1"
        assert orders.locator(".scale-desired").inner_text().strip() == "1"
        assert "(1)" in orders.locator(".scale-reason").inner_text()
        assert "A scaling engine decides" in page.locator("#scale-engine").inner_text()
        page.screenshot(path=str(screenshot_dir / "flower-scale.png"), full_page=True)
    finally:
        page.close()

    burst = subprocess.run(
        [sys.executable, "-m", "tasks.demo.burst", "--queue", "orders", "--tasks", "1500", "--millis", "10"]
        + ["--timeout", "90"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    print(burst.stdout)
    assert burst.returncode == 0, burst.stdout + burst.stderr
    assert "peak 3 workers" in burst.stdout, burst.stdout
    assert "Burst of 1,500 tasks drained in" in burst.stdout, burst.stdout
    assert "Back to 1 worker(s)" in burst.stdout, burst.stdout
    assert "redelivered by the broker meanwhile: 0 " in burst.stdout, burst.stdout

    down = run_make("down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    wait_for(
        lambda: not any(is_running(pid) for pid in pids.values()) and not processes_marked_with(run_dir),
        30,
        0.5,
        lambda: f"nothing left running: {processes_marked_with(run_dir)}",
    )
    assert not list(run_dir.glob("*.pid"))
