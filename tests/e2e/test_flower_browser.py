"""Flower's workers page, loaded in a real headless Chromium."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import e2e_environment, http_status, service_settings
from tests.support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.broker]


def worker_node(worker) -> str:
    """The node name Flower shows for a WorkerProcess (``name@host``)."""
    return f"{worker.name}@{socket.gethostname()}"


def load_until_listed(page, url: str, worker: str, timeout: float = 45):
    """Reload ``url`` until its workers table lists ``worker`` as online.

    Flower learns of workers from their events (online, heartbeats every 2 s),
    so a worker started just before Flower may take a moment to appear.
    """
    responses = []

    def listed() -> bool:
        responses.append(page.goto(url, wait_until="load"))
        rows = page.locator("#workers-table tbody tr", has_text=worker)
        return rows.count() == 1 and "Online" in rows.first.inner_text()

    wait_for(
        listed,
        timeout,
        interval=1.0,
        message=lambda: f"{worker!r} on {url}; page:\n{page.inner_text('body')[:2000]}",
    )
    return responses[-1]


def test_flower_workers_page_in_a_real_browser_shows_the_running_worker(
    vhost, tmp_path: Path, start_worker, start_flower, browser, screenshot_dir: Path
):
    """Given a worker and Flower on loopback without auth, the workers page in
    headless Chromium lists the worker by its node name."""
    env = e2e_environment(vhost, tmp_path)
    worker = start_worker(queues="orders", **service_settings(env))
    flower = start_flower(env)

    page = browser.new_page()
    try:
        response = load_until_listed(page, f"{flower.url}/workers", worker_node(worker))
        assert response is not None and response.status == 200
        shot = screenshot_dir / "flower-workers.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 0


def test_flower_with_basic_auth_refuses_the_workers_page_without_credentials_and_shows_it_with_them(
    vhost, tmp_path: Path, start_worker, start_flower, browser, screenshot_dir: Path
):
    """Given FLOWER_BASIC_AUTH, the workers page answers 401 to a browser without
    credentials, and shows the worker to one that sends them."""
    user, password = "ops", "correct-horse-battery"
    env = e2e_environment(vhost, tmp_path, FLOWER_BASIC_AUTH=f"{user}:{password}")
    worker = start_worker(queues="orders", **service_settings(env))
    flower = start_flower(env)
    workers_url = f"{flower.url}/workers"

    anonymous = browser.new_context()
    statuses: list[int] = []
    try:
        page = anonymous.new_page()
        page.on("response", lambda response: statuses.append(response.status))
        try:
            response = page.goto(workers_url)
            statuses.append(response.status if response else 0)
        except PlaywrightError as exc:
            # Headless Chromium has no login dialog: it ends the navigation here.
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc), exc
        assert 401 in statuses and 200 not in statuses, statuses
    finally:
        anonymous.close()
    assert http_status(workers_url, auth=(user, "wrong")) == 401

    signed_in = browser.new_context(http_credentials={"username": user, "password": password})
    try:
        page = signed_in.new_page()
        response = load_until_listed(page, workers_url, worker_node(worker))
        assert response is not None and response.status == 200
        shot = screenshot_dir / "flower-workers-basic-auth.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        signed_in.close()
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 0


def test_flower_shows_every_task_a_busy_worker_ran_as_succeeded(
    vhost, tmp_path: Path, client, start_worker, start_flower, browser, screenshot_dir: Path
):
    """Task events reach Flower: after 37 tasks on a worker with two pool
    processes, each task's page in headless Chromium says SUCCESS (the worker
    publishes its task events from a flusher thread; none may be lost)."""
    env = e2e_environment(vhost, tmp_path)
    flower = start_flower(env)
    worker = start_worker(
        queues="orders",
        concurrency=2,
        PLATFORM_QUEUES=env["PLATFORM_QUEUES"],
        PLATFORM_TASK_MODULES="tests.support.tasks",
    )
    page = browser.new_page()
    try:
        load_until_listed(page, f"{flower.url}/workers", worker_node(worker))
        # 37 tasks make 111 events: not a multiple of the dispatcher's buffer of 24,
        # so events left in the buffer would show up here as missing.
        ids = [client.send_task("tests.ok", args=[n], queue="orders").id for n in range(37)]

        def shows_success(task_id: str) -> bool:
            page.goto(f"{flower.url}/task/{task_id}", wait_until="load")
            return "SUCCESS" in page.inner_text("body")

        for task_id in ids:
            wait_for(
                lambda task_id=task_id: shows_success(task_id),
                timeout=30,
                interval=0.5,
                message=lambda task_id=task_id: (
                    f"task {task_id} as SUCCESS; page:\n{page.inner_text('body')[:1500]}"
                ),
            )
        shot = screenshot_dir / "flower-task-success.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
    assert shot.stat().st_size > 0
