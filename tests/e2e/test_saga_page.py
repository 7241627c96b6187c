"""Flower's saga pages in a real headless Chromium, against a real broker and worker.

Two orders go through the order saga: one in stock (confirmed; its order id
carries markup that must render as text), one out of stock whose refund
gateway is down (the compensation is dead-lettered: compensation_failed).
Flower runs through the launcher; screenshots land in results/e2e/<test>/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import e2e_environment
from tests.support.sagas import SAGA_QUEUES, all_ended, order, saga_environment, states
from tests.support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.broker]

#: An order id with markup: the pages must show it as text, never run it.
MARKUP = "<img src=x onerror=alert(13)>"


def test_the_saga_pages_list_sagas_by_state_and_show_a_timeline_linked_to_the_dead_letters(
    vhost, tmp_path: Path, start_worker, start_flower, browser, screenshot_dir: Path
):
    """Given a confirmed saga and one whose refund was dead-lettered, the Sagas page
    (linked from Flower's navbar) counts them by state and lists the failed one; its
    timeline shows each move with the service that made it and the dead letter's
    error, linked to payments.events' Dead letters page; markup from an order shows
    as text and runs nothing."""
    from config.app import create_app
    from config.settings import load_settings
    from tasks.saga.orders import place_order
    from tasks.saga.payments import set_outage

    env = saga_environment(
        e2e_environment(
            vhost, tmp_path, PLATFORM_QUEUES="orders", PLATFORM_TASK_MODULES="tests.support.tasks"
        ),
        step_deadline=30,
    )
    app = create_app(load_settings(env), main="test-saga-page")
    set_outage("broken-refunds", True, on=app)
    start_worker(queues=SAGA_QUEUES, concurrency=1, **env)
    confirmed = place_order({**order(0), "order_id": MARKUP}, app=app)
    failed = place_order(order(1, sku="lamp", card="broken-refunds"), app=app)
    app.close()
    wait_for(lambda: all_ended(env, 2), timeout=60, message=lambda: f"2 sagas to end: {states(env)}")
    assert states(env) == {confirmed: "confirmed", failed: "compensation_failed"}
    flower = start_flower(env)

    dialogs: list[str] = []
    page = browser.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(f"{flower.url}/workers")
        page.click("#nav-sagas")
        page.wait_for_url(f"{flower.url}/sagas")
        assert page.inner_text("#count-confirmed").split() == ["confirmed", "1"]
        assert page.inner_text("#count-compensation_failed").split() == ["compensation_failed", "1"]
        assert failed in page.inner_text("#sagas-table")
        page.screenshot(path=str(screenshot_dir / "sagas.png"), full_page=True)

        page.click(f"#saga-{failed} a")
        page.wait_for_url(f"{flower.url}/sagas/{failed}")
        assert "compensation_failed" in page.inner_text("#saga-state")
        timeline = page.inner_text("#timeline")
        assert "payment_pending → stock_pending" in timeline and "inventory" in timeline
        assert "saga.dead_letter" in timeline and "GatewayTimeout" in timeline
        assert "GatewayTimeout" in page.inner_text("#saga-letters")
        page.screenshot(path=str(screenshot_dir / "saga.png"), full_page=True)
        page.click("#saga-letters a")
        page.wait_for_url(f"{flower.url}/dlq/payments.events")

        page.goto(f"{flower.url}/sagas?state=confirmed")
        assert MARKUP.replace('"', "") in page.inner_text("#sagas-table").replace('"', "").replace("\\", "")
        page.goto(f"{flower.url}/sagas/{confirmed}")
        assert "stock_pending → confirmed" in page.inner_text("#timeline")
        assert page.inner_text("#no-letters").strip() == "None."
        assert dialogs == []
        assert page.goto(f"{flower.url}/sagas/no-such-saga").status == 404
    finally:
        page.close()
