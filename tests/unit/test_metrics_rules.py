"""The alert rules in compose/prometheus/ through Prometheus's own ``promtool``.

promtool comes from Debian's ``prometheus`` package; missing, these tests skip
locally and fail under CI=true.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.broker import in_ci
from tests.support.worker import ROOT

RULES = ROOT / "compose" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is missing; install it with: apt-get update && apt-get install -y prometheus"
        if in_ci():
            pytest.fail(f"CI=true and promtool is required: {message}")
        pytest.skip(message)
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_alert_rules_and_the_prometheus_config_are_valid():
    """promtool accepts alerts.yml and prometheus.yml (which loads it)."""
    rules = run("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 8 rules found" in rules.stdout
    config = run("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_alert_rules_fire_exactly_when_their_unit_tests_say():
    """DLQ not empty, inflow above 10/h, depth above 1,000, a queue without a
    consumer for 2 minutes, oldest older than a day, metrics down, a saga in
    compensation_failed, sagas stuck for 5 minutes: each fires on
    its threshold and not below it."""
    result = run("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
