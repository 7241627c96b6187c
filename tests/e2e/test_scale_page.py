"""Flower's Scaling page in a real headless Chromium, with a real autoscaler, worker and broker.

The autoscaler (``celery -A config scale run --queue orders``) runs the
orders pool at its minimum of one worker; Flower runs through the launcher.
Screenshots land in results/e2e/<test>/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import e2e_environment
from tests.support.autoscaler import Autoscaler, kill_leftover_workers
from tests.support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.broker]


def test_the_scaling_page_shows_the_engines_pool_size_and_desired_size_and_advice_elsewhere(
    vhost, tmp_path: Path, start_flower, browser, screenshot_dir: Path
) -> None:
    """Given the autoscaler running orders at its minimum (1 worker), the Scaling
    page (linked from Flower's navbar) shows orders with pool size 1, desired 1 and
    the engine's last decision; the default queue, which no engine scales, shows
    the policy's advice."""
    env = e2e_environment(
        vhost,
        tmp_path,
        PLATFORM_QUEUES="orders",
        PLATFORM_TASK_MODULES="tests.support.tasks",
        PLATFORM_SUBSCRIPTIONS_FILE="",
        PLATFORM_SCALE_INTERVAL="1",
    )
    scaler = Autoscaler(env, tmp_path, "--queue", "orders").start()
    try:
        wait_for(lambda: "ready." in _worker_log(scaler.run_dir), 60, 0.5, "the orders worker to be ready")
        flower = start_flower(env)
        page = browser.new_page()
        try:
            page.goto(f"{flower.url}/dlq", wait_until="load")
            page.click("#nav-scale")
            page.wait_for_url(f"{flower.url}/scale")

            def shows_the_pool() -> bool:
                page.reload(wait_until="load")
                row = page.locator("#scale-row-orders")
                return row.locator(".scale-workers").inner_text().strip() == "1"

            wait_for(
                shows_the_pool, 30, 1.0, lambda: f"pool size 1 on the page:\n{page.inner_text('body')[:2000]}"
            )
            orders = page.locator("#scale-row-orders")
            default = page.locator("#scale-row-default")
            assert orders.locator(".scale-desired").inner_text().strip() == "1"
            assert "below min 1: 0 -> 1" in orders.locator(".scale-reason").inner_text() or "hold (1)" in (
                orders.locator(".scale-reason").inner_text()
            )
            assert "(advice)" in default.locator(".scale-desired").inner_text()
            assert "A scaling engine decides" in page.locator("#scale-engine").inner_text()
            page.screenshot(path=str(screenshot_dir / "flower-scale.png"), full_page=True)
        finally:
            page.close()
    finally:
        scaler.stop()
        assert not kill_leftover_workers(scaler.run_dir)


def _worker_log(run_dir: Path) -> str:
    path = run_dir / "worker-orders-1.log"
    return path.read_text(errors="replace") if path.exists() else ""
