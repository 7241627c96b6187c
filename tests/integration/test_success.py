"""A task that succeeds is acked only after its body returns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ledger import events
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker


def test_a_successful_task_is_acked_and_its_message_is_gone(vhost, client, start_worker, tmp_path: Path):
    start_worker()
    result = client.send_task("tests.ok", args=[1], queue="orders")
    ledger = tmp_path / "ledger.txt"
    wait_for(lambda: events(ledger, "done", result.id), message="the task to run")
    wait_for(lambda: vhost.queue_info("orders").get("messages", 1) == 0, message="orders to be empty")
    assert vhost.depth("orders.dlq") == 0
