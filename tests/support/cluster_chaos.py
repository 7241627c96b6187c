"""What every scenario on the local cluster does at its end: settle the work, count the dead
letters, write the ledger (``platform`` is the ``cluster_platform`` fixture of tests/chaos)."""

from __future__ import annotations

import urllib.error
from typing import Any

from tests.support.chaos_ledger import ChaosLedger, dead_letter_classes
from tests.support.chaos_run import Published, wait_settled


def dead_letters(platform: Any) -> int:
    """Messages in orders.dlq (a classic queue: unknown, so 0, while its node is down)."""
    try:
        info = platform.vhost.queue_info("orders.dlq")
    except (urllib.error.HTTPError, OSError):
        return 0
    return int(info.get("messages", 0) or 0)


def settle(platform: Any, published: Published, timeout: float, where: Any = None) -> None:
    """Wait until every confirmed task of ``published`` committed its side effect or was dead-lettered."""
    wait_settled(
        published.confirmed, platform.state_db, lambda: dead_letters(platform), timeout=timeout, where=where
    )


def ledger_of(
    platform: Any, scenario: str, fault: str, published: Published, started: float, **measured: float
) -> ChaosLedger:
    """The scenario's ledger, from what was published, done and dead-lettered; written as JSON."""
    ledger = ChaosLedger.build(
        scenario,
        fault,
        published.confirmed,
        published.refused,
        platform.state_db,
        platform.ledger,
        dead_letter_classes(platform.vhost.take_all("orders.dlq")),
        started,
        measured,
    )
    ledger.write()
    return ledger
