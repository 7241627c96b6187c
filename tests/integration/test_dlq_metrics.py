"""``python -m workers.ops.metrics`` against a real broker: what a Prometheus scrape sees."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port, management_url
from tests.integration.test_dlq_cli import run_cli, seed
from tests.support.messages import celery_message
from tests.support.wait import wait_for
from tests.support.worker import ROOT

pytestmark = pytest.mark.broker


@pytest.fixture
def metrics(platform_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The metrics server on a free port of this test's vhost; stopped after."""
    port = free_port()
    env = {
        **platform_env,
        "PLATFORM_MANAGEMENT_URL": management_url(),
        "PLATFORM_RUN_DIR": str(tmp_path / "run"),
    }
    assert run_cli(env, "topology", "declare").returncode == 0
    log = open(tmp_path / "metrics.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.ops.metrics", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    yield f"http://127.0.0.1:{port}/metrics", env
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def scrape(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read().decode()
    except OSError:
        return None


def value(text: str, series: str, **labels: str) -> float | None:
    """The value of the one sample of ``series`` whose labels include ``labels``."""
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != series:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            return float(match.group(3))
    return None


def test_a_scrape_shows_depths_consumers_lag_oldest_age_and_inflow_of_every_queue(vhost, metrics):
    """Given 3 dead letters in orders.dlq (one 2 h old) and 1 message waiting on
    orders, a scrape shows: orders.dlq ready 3, its oldest 2 h old, 2 of them
    from the last hour; orders ready 1 with no consumer and a lag of 1; every
    retry queue at 0; and the exposition passes `promtool check metrics`."""
    url, _ = metrics
    seed(vhost, failed_at=datetime.now(UTC) - timedelta(hours=2))
    seed(vhost)
    seed(vhost)
    body, headers = celery_message("tests.ok")
    vhost.publish("orders", body, headers=headers, exchange="platform.tasks")

    def settled() -> str | None:
        text = scrape(url)
        ready = text and value(text, "platform_queue_messages_ready", queue="orders.dlq")
        return (
            text if ready == 3 and value(text, "platform_queue_messages_ready", queue="orders") == 1 else None
        )

    # The management API refreshes its numbers every 5 s.
    text = wait_for(settled, timeout=30, interval=1.0, message="the scrape to show the seeded depths")
    assert value(text, "platform_metrics_up") == 1
    assert (
        value(
            text, "platform_queue_messages_ready", queue="orders.dlq", kind="dead-letter", work_queue="orders"
        )
        == 3
    )
    assert 7200 - 60 < value(text, "platform_dead_letter_oldest_age_seconds", queue="orders.dlq") < 7200 + 60
    assert value(text, "platform_dead_letter_inflow_last_hour", queue="orders.dlq") == 2
    assert value(text, "platform_queue_consumers", queue="orders") == 0
    assert value(text, "platform_consumer_lag_messages", queue="orders") == 1
    assert value(text, "platform_queue_messages_ready", queue="orders.retry.1", kind="retry") == 0
    assert value(text, "platform_dead_letter_oldest_age_seconds", queue="payments.dlq") == 0
    assert vhost.depth("orders.dlq") == 3, "scraping consumes nothing"
    if shutil.which("promtool"):
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_a_broker_without_its_management_api_scrapes_as_down_not_as_an_error(vhost, metrics, tmp_path: Path):
    """With the management API unreachable, the scrape still answers 200 with platform_metrics_up 0."""
    _, env = metrics
    port = free_port()
    broken = {**env, "PLATFORM_MANAGEMENT_URL": "http://guest:guest@127.0.0.1:1/api/"}
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.ops.metrics", "--port", str(port)], cwd=ROOT, env=broken,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        text = wait_for(lambda: scrape(f"http://127.0.0.1:{port}/metrics"), timeout=30, message="a scrape")
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert value(text, "platform_metrics_up") == 0
