"""Flower's dead-letter page in a real headless Chromium, against a real broker and worker.

Flower runs through the launcher (``python -m workers.ops.flower``), a worker runs
the test tasks, and the screenshots land in results/e2e/<test>/ for a person
to look at.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import e2e_environment
from tests.support.ledger import events
from tests.support.messages import celery_message
from tests.support.wait import wait_for
from tests.support.worker import ROOT
from workers.ops.dlq import AUDIT_FILE, group_id

pytestmark = [pytest.mark.e2e, pytest.mark.broker]

#: What tests.permanent fails with: a script payload that must render as text.
SCRIPT_MESSAGE = "order 42 is invalid: <script>alert(1)</script>"


def environment(vhost, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Flower and CLI environment on this vhost with the test tasks' queues."""
    return e2e_environment(
        vhost,
        tmp_path,
        PLATFORM_QUEUES="orders,payments",
        PLATFORM_TASK_MODULES="tests.support.tasks",
        **overrides,
    )


def declare(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "topology", "declare"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def seed_fixed(vhost, count: int) -> list[str]:
    """Dead letters of tests.ok (its cause since fixed), as a worker writes them."""
    ids = []
    for _ in range(count):
        body, headers = celery_message("tests.ok", task_id=str(uuid.uuid4()))
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        headers.update(
            {
                "x-original-queue": "orders",
                "x-original-exchange": "platform.tasks",
                "x-original-routing-key": "orders",
                "x-task-name": "tests.ok",
                "x-task-id": headers["id"],
                "x-error-class": "transient",
                "x-error-type": "ConnectionRefusedError",
                "x-error-message": "payments API refused the connection",
                "x-error-traceback": "Traceback (most recent call last):\nConnectionRefusedError: refused\n",
                "x-retry-count": 5,
                "retries": 5,
                "x-first-failed-at": now,
                "x-last-failed-at": now,
                "x-worker": "w1@test",
            }
        )
        vhost.publish("orders.dlq", body, headers=headers, correlation_id=headers["id"])
        ids.append(headers["id"])
    return ids


def fail_permanently(vhost, client, count: int) -> None:
    """Have the running worker dead-letter ``count`` tests.permanent tasks (script payload)."""
    before = vhost.depth("orders.dlq")
    for _ in range(count):
        client.send_task("tests.permanent", queue="orders")
    wait_for(
        lambda: vhost.depth("orders.dlq") == before + count, timeout=60, message="the permanent failures"
    )


def post(url: str, data: dict[str, str], auth: tuple[str, str] | None = None, cookie: str = "") -> int:
    """POST a form without following redirects; returns the status."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), method="POST")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    if cookie:
        request.add_header("Cookie", cookie)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def xsrf_token(url: str, auth: tuple[str, str]) -> tuple[str, str]:
    """The form token and the cookie a signed-in browser gets with the page at ``url``."""
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as response:
        page = response.read().decode()
        cookie = response.headers["Set-Cookie"].split(";")[0]
    token = re.search(r'name="_xsrf" value="([^"]+)"', page)
    assert token, "the page has a form with the XSRF token"
    return token.group(1), cookie


def test_the_dlq_page_shows_counts_and_groups_and_a_replay_click_brings_the_messages_back_to_complete(
    vhost, client, tmp_path: Path, start_worker, start_flower, browser, screenshot_dir: Path
):
    """Given 4 dead letters of a task whose cause is fixed and 2 real permanent
    failures, the Dead letters page (linked from Flower's navbar) shows 6 for
    orders and both error groups; on the queue page a click on the group's
    Replay sends its 4 messages back to `orders`, where the worker completes
    them, while the 2 others stay; the replay is audited with the operator."""
    env = environment(vhost, tmp_path)
    declare(env)
    fixed = seed_fixed(vhost, 4)
    start_worker(queues="orders")
    fail_permanently(vhost, client, 2)
    flower = start_flower(env)

    page = browser.new_page()
    try:
        page.goto(f"{flower.url}/workers")
        page.click("#nav-dlq")
        page.wait_for_url(f"{flower.url}/dlq")
        assert page.inner_text("#dlq-row-orders .dlq-count").strip() == "6"
        assert page.inner_text("#dlq-row-payments .dlq-count").strip() == "0"
        groups = page.locator("#groups-orders tr.dlq-group")
        assert groups.count() == 2
        assert (
            "tests.ok" in groups.nth(0).inner_text()
            and "ConnectionRefusedError" in groups.nth(0).inner_text()
        )
        assert groups.nth(0).locator(".dlq-group-count").inner_text().strip() == "4"
        assert "tests.permanent" in groups.nth(1).inner_text()
        page.screenshot(path=str(screenshot_dir / "dlq-index.png"), full_page=True)

        page.click("#dlq-row-orders a")
        page.wait_for_url(f"{flower.url}/dlq/orders")
        assert page.inner_text("#dlq-count").strip() == "6"
        assert page.locator("article.dlq-letter").count() == 6
        assert page.locator("svg.dlq-trend rect").count() == 24
        shot = screenshot_dir / "dlq-queue.png"
        page.screenshot(path=str(shot), full_page=True)

        group = group_id("tests.ok", "ConnectionRefusedError")
        page.click(f'tr.dlq-group[data-group="{group}"] button[name="replay-group"]')
        page.wait_for_selector("#dlq-outcome")
        assert "Replayed 4 of 4" in page.inner_text("#dlq-outcome")
        assert page.inner_text("#dlq-count").strip() == "2"
        page.screenshot(path=str(screenshot_dir / "dlq-after-replay.png"), full_page=True)
    finally:
        page.close()
    print(f"screenshots: {screenshot_dir}")
    assert shot.stat().st_size > 0

    ledger = tmp_path / "ledger.txt"
    wait_for(lambda: len(events(ledger, "done")) == 4, timeout=60, message="the 4 replayed tasks to complete")
    assert sorted(e.task_id for e in events(ledger, "done")) == sorted(fixed)
    assert vhost.depth("orders.dlq") == 2
    [record] = [
        json.loads(line) for line in (Path(env["PLATFORM_RUN_DIR"]) / AUDIT_FILE).read_text().splitlines()
    ]
    assert record["action"] == "replay" and record["replayed"] == 4
    assert record["who"] == "flower:anonymous@127.0.0.1"


def test_a_task_failing_with_a_script_payload_renders_as_text_and_no_script_runs(
    vhost, client, tmp_path: Path, start_worker, start_flower, browser, screenshot_dir: Path
):
    """Given a dead letter whose error message is `<script>alert(1)</script>`, the
    DLQ pages show that text literally (message and traceback), no dialog opens,
    and no script element carries it."""
    env = environment(vhost, tmp_path)
    declare(env)
    start_worker(queues="orders")
    fail_permanently(vhost, client, 1)
    flower = start_flower(env)

    dialogs: list[str] = []
    page = browser.new_page()
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        for path in ("/dlq", "/dlq/orders"):
            page.goto(f"{flower.url}{path}", wait_until="load")
            assert page.get_by_text(SCRIPT_MESSAGE).first.is_visible()
            scripts = page.evaluate("Array.from(document.scripts).map(s => s.textContent + ' ' + s.src)")
            assert not any("alert(1)" in script for script in scripts)
        assert SCRIPT_MESSAGE in page.inner_text("pre.dlq-traceback")
        page.screenshot(path=str(screenshot_dir / "dlq-escaped.png"), full_page=True)
    finally:
        page.close()
    assert dialogs == []


def test_flower_broker_page_lists_retry_and_dead_letter_queues(vhost, tmp_path: Path, start_flower):
    """Flower's broker page lists orders.retry.1..5 and orders.dlq, which no worker consumes."""
    env = environment(vhost, tmp_path)
    declare(env)
    flower = start_flower(env)

    def listed() -> str | None:
        with urllib.request.urlopen(f"{flower.url}/broker", timeout=10) as response:
            page = response.read().decode()
        return page if "orders.dlq" in page else None

    page = wait_for(listed, timeout=30, interval=1.0, message="orders.dlq on the broker page")
    for name in ("orders", "orders.retry.1", "orders.retry.5", "payments.dlq"):
        assert f"<td>{name}</td>" in page


def test_replay_and_purge_need_credentials_and_the_xsrf_token(vhost, tmp_path: Path, start_flower):
    """With basic auth, a POST without the XSRF token is refused (403) even with
    credentials, and one with a valid token but without credentials gets 401;
    the dead letters stay where they were."""
    auth = ("ops", "s3cret")
    env = environment(vhost, tmp_path, FLOWER_BASIC_AUTH=":".join(auth))
    declare(env)
    seed_fixed(vhost, 2)
    flower = start_flower(env)
    token, cookie = xsrf_token(f"{flower.url}/dlq/orders", auth)
    for action in ("replay", "purge"):
        target = f"{flower.url}/dlq/orders/{action}"
        assert post(target, {}) == 403
        assert post(target, {}, auth=auth) == 403
        assert post(target, {"_xsrf": token}, cookie=cookie) == 401
    assert vhost.depth("orders.dlq") == 2
    assert vhost.depth("orders") == 0
    assert post(f"{flower.url}/dlq/orders/purge", {"_xsrf": token}, auth=auth, cookie=cookie) == 303
    assert vhost.depth("orders.dlq") == 0
