"""The demo tour: `python -m tasks.demo` and `make demo`, against real workers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import SERVICE_QUEUES, e2e_environment, run_make, service_settings
from tests.support.worker import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.broker]


def assert_summary_reports_every_outcome(output: str, completed: str = "8 of 10") -> None:
    assert "Settled in" in output, output
    assert f"Completed: {completed}" in output, output
    assert "Dead-lettered: 2" in output, output
    assert "inventory.dlq" in output and "x-error-class=permanent" in output, output
    assert "email.dlq" in output and "x-error-class=unknown" in output, output
    assert "x-retry-count=2" in output, output
    assert "BusinessRuleViolation" in output and "ValueError" in output, output
    assert "/tasks" in output and "/workers" in output and "/broker" in output, output
    assert "Not as expected" not in output, output


def test_the_demo_sends_work_to_every_queue_and_reports_completions_and_dead_letters(
    vhost, tmp_path: Path, start_worker
):
    """Given a worker on every service queue, the demo settles and its summary shows
    the completed tasks, the business-rule failure in inventory.dlq and the unknown
    error in email.dlq after two retries; the dead letters are left in their queues."""
    env = e2e_environment(vhost, tmp_path)
    start_worker(
        queues=SERVICE_QUEUES,
        concurrency=2,
        **service_settings(env),
    )
    result = subprocess.run(
        [sys.executable, "-m", "tasks.demo", "--timeout", "60"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_summary_reports_every_outcome(result.stdout)
    assert vhost.depth("inventory.dlq") == 1, "the demo reads dead letters without consuming them"
    assert vhost.depth("email.dlq") == 1
    assert all(vhost.depth(queue) == 0 for queue in SERVICE_QUEUES.split(","))


def test_the_demo_without_workers_sends_nothing_and_says_to_run_make_up(vhost, tmp_path: Path):
    """Given no worker, the demo does not leave work behind: it says how to start workers and exits 1."""
    env = e2e_environment(vhost, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "tasks.demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "nothing was sent" in result.stdout and "make up" in result.stdout
    assert all(vhost.depth(queue) == 0 for queue in SERVICE_QUEUES.split(","))


def test_make_demo_from_the_readme_starts_the_platform_runs_the_tour_and_make_down_stops_it(make_cluster):
    """`make demo` (the README's quick start) brings up workers and Flower, runs the
    tour with its summary and the order saga's table, and `make down` stops everything again."""
    env = make_cluster
    demo = run_make("demo", env=env, timeout=240)
    print(demo.stdout)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "The platform is up: workers for 11 queues" in demo.stdout  # 5 services, default, 5 subscribers
    # The seed's subscriptions are on: one order.created reaches four services (payments ignores it: no saga).
    assert "Published 1 event: order.created" in demo.stdout
    assert "email.events, analytics.events, inventory.events" in demo.stdout
    for queue in ("email.events", "analytics.events", "inventory.events", "payments.events"):
        assert re.search(rf"^  {re.escape(queue)} +1 completed$", demo.stdout, re.MULTILINE), demo.stdout
    assert_summary_reports_every_outcome(demo.stdout, completed="12 of 14")
    # The order saga: six orders, each ended as its case says (no "expected" mark).
    assert "Order saga: 6 orders" in demo.stdout
    summary = "confirmed: 2, cancelled after compensation: 1, cancelled on payment: 1, timed out: 1, dead-lettered: 1"
    assert summary in demo.stdout
    assert "NOT AS EXPECTED" not in demo.stdout
    assert "/sagas" in demo.stdout
    down = run_make("down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped 12 processes" in down.stdout
