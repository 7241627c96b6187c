"""Flower's event pages in a real headless Chromium, against a real broker and worker.

Four services subscribe to ``order.created``: email handles it, billing
rejects it (dead-lettered at once, with a ``<script>`` payload in the error),
stuck keeps timing out (its retry waits a minute in ``stuck.events.retry.1``)
and analytics has no worker (pending). One real worker consumes the first
three queues; Flower runs through the launcher (``python -m workers.ops.flower``);
screenshots land in results/e2e/<test>/.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import e2e_environment, http_status
from tests.support.event_handlers import REJECTION
from tests.support.ledger import events as ledger_events
from tests.support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.broker]

#: Service -> its order.created handler (tests/support/event_handlers.py).
SUBSCRIBERS = {"email": "email", "billing": "rejecting", "stuck": "stuck", "analytics": "analytics"}
#: The queues the worker consumes (analytics stays pending).
CONSUMED = "email.events,billing.events,stuck.events"
#: Credentials of the Flower with basic auth.
AUTH = ("ops", "s3cret")


def write_subscriptions(path: Path) -> Path:
    """A subscriptions file: each service of SUBSCRIBERS handles order.created."""
    lines = []
    for service, handler in SUBSCRIBERS.items():
        lines += [
            f"[services.{service}]",
            f'events = {{ "order.created" = "tests.events.{handler}" }}',
            'modules = ["tests.support.event_handlers"]',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(vhost, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Flower, worker and publisher environment on this vhost with the subscriptions."""
    return e2e_environment(
        vhost,
        tmp_path,
        PLATFORM_QUEUES="orders",
        PLATFORM_TASK_MODULES="tests.support.tasks",
        PLATFORM_SUBSCRIPTIONS_FILE=str(write_subscriptions(tmp_path / "subscriptions.toml")),
        **overrides,
    )


def record_dialogs(dialogs: list[str]) -> Callable[[Any], None]:
    """A dialog listener that notes each dialog's message and dismisses it."""

    def listener(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    return listener


def publish_order(env: dict[str, str], order_id: str) -> str:
    """Publish one order.created through the public API; returns its event id."""
    from config.app import create_app
    from config.settings import load_settings
    from tasks.events import publish

    app = create_app(load_settings(env), main="test-event-page-publisher")
    try:
        return publish("order.created", {"order_id": order_id, "amount": 12.5}, app=app)
    finally:
        app.close()


def test_the_event_page_shows_who_processed_retried_dead_lettered_and_still_has_the_event(
    vhost, tmp_path: Path, start_worker, start_flower, browser, screenshot_dir: Path
):
    """Given one order.created that email handled, billing dead-lettered with a
    `<script>` payload, stuck is retrying and analytics never got to, the Events
    page (linked from Flower's navbar) lists the four subscribers; looking the
    event up shows each one's state and details, the payload as text (no dialog,
    no script), and billing's row links to its DLQ page, which holds the event."""
    env = environment(vhost, tmp_path)
    start_worker(queues=CONSUMED, concurrency=1, **env)
    event_id = publish_order(env, "o-7")
    ledger = tmp_path / "ledger.txt"
    wait_for(lambda: ledger_events(ledger, "handled"), timeout=60, message="email to handle the event")
    wait_for(lambda: vhost.depth("billing.events.dlq") == 1, timeout=60, message="billing's dead letter")
    wait_for(lambda: vhost.depth("stuck.events.retry.1") == 1, timeout=60, message="stuck's retry to wait")
    flower = start_flower(env)

    dialogs: list[str] = []
    page = browser.new_page()
    page.on("dialog", record_dialogs(dialogs))
    try:
        page.goto(f"{flower.url}/workers")
        page.click("#nav-events")
        page.wait_for_url(f"{flower.url}/events")
        for service in SUBSCRIBERS:
            assert f"{service}.events" in page.inner_text(f"#subscription-{service}")
        assert "order.created" in page.inner_text("#subscription-billing")
        assert "tests.events.rejecting" in page.inner_text("#subscription-billing")
        page.screenshot(path=str(screenshot_dir / "events-index.png"), full_page=True)

        page.fill("#event-id-input", event_id)
        page.click("#event-lookup-submit")
        page.wait_for_url(f"{flower.url}/events/{event_id}")
        assert page.inner_text("#event-id").strip() == event_id
        states = {
            service: page.get_attribute(f"#event-row-{service}", "data-state") for service in SUBSCRIBERS
        }
        assert states == {
            "email": "processed",
            "billing": "dead-lettered",
            "stuck": "retrying",
            "analytics": "pending",
        }
        assert f"email:{event_id}" in page.inner_text("#event-row-email")
        billing = page.locator("#event-row-billing")
        assert billing.locator(".event-error-class").inner_text().strip() == "permanent"
        assert billing.locator(".event-error-type").inner_text().strip() == "workers.errors.PermanentError"
        payload = REJECTION.format(order_id="o-7")
        assert billing.locator(".event-error-message").inner_text().strip() == payload
        assert page.get_by_text(payload).first.is_visible()
        stuck = page.locator("#event-row-stuck")
        assert stuck.locator(".event-retry-count").inner_text().strip() == "1"
        assert stuck.locator(".event-retry-queue").inner_text().strip() == "stuck.events.retry.1"
        assert "upstream is down" in stuck.inner_text()
        assert "never delivered" in page.inner_text("#event-row-analytics")
        assert "1 processed · 1 retrying · 1 dead-lettered · 1 pending" in page.inner_text("#event-summary")
        scripts = page.evaluate("Array.from(document.scripts).map(s => s.textContent + ' ' + s.src)")
        assert not any("alert(1)" in script for script in scripts)
        shot = screenshot_dir / "event.png"
        page.screenshot(path=str(shot), full_page=True)

        billing.locator("a.event-dlq-link").click()
        page.wait_for_url(f"{flower.url}/dlq/billing.events")
        assert page.inner_text("#dlq-count").strip() == "1"
        assert page.get_by_text(payload).first.is_visible()
    finally:
        page.close()
    print(f"screenshots: {screenshot_dir}")
    assert shot.stat().st_size > 0
    assert dialogs == []
    # Looking was side-effect free: the dead letter and the retry are where they were.
    assert vhost.depth("billing.events.dlq") == 1
    assert vhost.depth("stuck.events.retry.1") == 1


def test_a_malformed_or_unknown_event_id_gets_a_clear_message_behind_flowers_auth(
    vhost, tmp_path: Path, start_flower, browser, screenshot_dir: Path
):
    """With basic auth, the event pages need credentials (401 without). Signed in,
    an empty, over-long, non-UTF-8 or control-character id gets 400 and a sentence
    saying what is wrong, as does an id made of HTML that no subscriber has (not a
    UUID), shown as text; an unknown UUID gets a 404 saying no subscriber has it;
    never a traceback."""
    env = environment(vhost, tmp_path, FLOWER_BASIC_AUTH=":".join(AUTH))
    flower = start_flower(env)
    assert http_status(f"{flower.url}/events") == 401
    assert http_status(f"{flower.url}/events/some-id") == 401
    assert http_status(f"{flower.url}/events", auth=AUTH) == 200

    context = browser.new_context(http_credentials={"username": AUTH[0], "password": AUTH[1]})
    dialogs: list[str] = []
    page = context.new_page()
    page.on("dialog", record_dialogs(dialogs))
    try:
        malformed = {
            "/events?id=+": (200, "enter an event id"),
            "/events/" + "x" * 300: (400, "ids are at most 256"),
            "/events/%FF%FE": (400, "not valid UTF-8"),
            "/events/bad%0Aid": (400, "control characters"),
        }
        for path, (status, message) in malformed.items():
            response = page.goto(f"{flower.url}{path}")
            assert response is not None and response.status == status, path
            assert message in page.inner_text("#event-problem"), path
            assert "Traceback" not in page.content(), path
        page.screenshot(path=str(screenshot_dir / "event-malformed.png"), full_page=True)

        # Not a UUID and nobody has it: malformed after looking, shown as text.
        html_id = '<img src=x onerror=alert(1)><b>bold</b>&"q"'
        response = page.goto(f"{flower.url}/events/{urllib.parse.quote(html_id, safe='')}")
        assert response is not None and response.status == 400
        problem = page.inner_text("#event-problem")
        assert html_id in problem and "is not an event id" in problem and "UUID" in problem
        assert page.locator("main img, main b").count() == 0
        assert "Traceback" not in page.content()

        unknown = str(uuid.uuid4())
        response = page.goto(f"{flower.url}/events/{unknown}")
        assert response is not None and response.status == 404
        assert page.inner_text("#event-id") == unknown
        assert "No subscriber has processed, retried or dead-lettered this event" in page.inner_text(
            "#event-unknown"
        )
        assert "Traceback" not in page.content()
        page.screenshot(path=str(screenshot_dir / "event-unknown.png"), full_page=True)
    finally:
        page.close()
        context.close()
    assert dialogs == []
