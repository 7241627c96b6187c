"""The topology from the operator's side: declared by command, idempotent, checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.broker import Vhost
from tests.support.worker import ROOT

pytestmark = pytest.mark.broker


def celery(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_declaring_twice_creates_every_queue_once(vhost: Vhost, platform_env: dict[str, str]):
    """`topology declare` is idempotent, and `topology show --json` lists every
    work queue with its delay ladder and its classic DLQ."""
    for _ in range(2):
        done = celery(platform_env, "topology", "declare")
        assert done.returncode == 0, done.stderr
    shown = celery(platform_env, "topology", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {row["queue"]: row for row in json.loads(shown.stdout)}
    for queue in ("orders", "payments", "default"):
        assert rows[queue]["type"] == "quorum"
        assert rows[f"{queue}.dlq"]["type"] == "classic"
        assert [f"{queue}.retry.{n}" in rows for n in range(1, 6)] == [True] * 5
        assert rows[queue]["messages"] == 0


def test_an_operator_adds_a_queue_by_configuration_only(vhost: Vhost, platform_env: dict[str, str]):
    """PLATFORM_QUEUES gains `fraud`: its queue, ladder and DLQ appear."""
    env = {**platform_env, "PLATFORM_QUEUES": "orders,payments,fraud"}
    assert celery(env, "topology", "declare").returncode == 0
    assert vhost.depth("fraud") == 0
    assert vhost.depth("fraud.retry.5") == 0
    assert vhost.depth("fraud.dlq") == 0


def test_a_conflicting_queue_stops_the_declaration_with_its_name(vhost: Vhost, platform_env: dict[str, str]):
    """A classic `orders` queue left from another setup is reported, not replaced."""
    with vhost.connect() as connection:
        connection.channel().queue_declare("orders", durable=True, auto_delete=False)
    done = celery(platform_env, "topology", "declare")
    assert done.returncode == 4
    assert "'orders' already exists with different arguments" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_broker_being_down_is_a_clear_error(tmp_path: Path, platform_env: dict[str, str]):
    env = {**platform_env, "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}
    done = celery(env, "topology", "declare")
    assert done.returncode == 3
    assert "broker unreachable" in done.stderr


def test_a_bad_setting_stops_the_worker_naming_the_variable(platform_env: dict[str, str]):
    """A worker refuses to start on a bad value, with one line and exit status 2."""
    env = {**platform_env, "PLATFORM_RETRY_BASE": "soon"}
    done = celery(env, "worker")
    assert done.returncode == 2
    assert "PLATFORM_RETRY_BASE must be a number, got 'soon'" in done.stderr
    assert "Traceback" not in done.stderr
