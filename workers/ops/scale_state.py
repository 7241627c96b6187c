"""The scaling engine's last decision per queue, in the state store: what metrics, Flower and ``scale status`` read.

The engine (:mod:`workers.scaling.engine`) runs in its own process; after
each pass it writes one row per queue into the state store (the idempotency
store's database, table ``scale_decisions``), the way worker lateness is
shared (:mod:`workers.delivery.lateness`). A row is *live* while it is
younger than :func:`live_within` of the engine's interval: an engine that
stopped leaves its rows, and readers then fall back to advice (the metrics'
``platform_scale_desired_workers`` from the policy alone).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.delivery.idempotency import open_store
from workers.scaling.engine import QueueReport

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS scale_decisions ("
    " queue TEXT PRIMARY KEY,"
    " pool TEXT NOT NULL,"
    " backlog BIGINT,"
    " workers BIGINT NOT NULL,"
    " desired BIGINT NOT NULL,"
    " reason TEXT NOT NULL,"
    " acted INTEGER NOT NULL,"
    " dry_run INTEGER NOT NULL,"
    " actions_up BIGINT NOT NULL,"
    " actions_down BIGINT NOT NULL,"
    " restarts BIGINT NOT NULL,"
    " at DOUBLE PRECISION NOT NULL)"
)

#: Passes an engine may miss before its rows stop being live.
MISSED_PASSES = 5
#: Seconds a row stays live at least, whatever the interval.
LIVE_AT_LEAST = 15.0


def live_within(interval: float) -> float:
    """Seconds a decision stays live when the engine passes every ``interval`` seconds."""
    return max(interval * MISSED_PASSES, LIVE_AT_LEAST)


@dataclass(frozen=True)
class ScaleRecord:
    """One queue's stored decision."""

    report: QueueReport
    #: The pool's name (``local``, ...).
    pool: str
    #: Workers of the queue that exited on their own and were started again.
    restarts: int

    def live(self, now: float, interval: float) -> bool:
        """Whether an engine wrote this within :func:`live_within` of ``interval``."""
        return now - self.report.at <= live_within(interval)


def write_decisions(
    state_url: str, reports: Iterable[QueueReport], pool: str, restarts: Mapping[str, int]
) -> None:
    """Replace each reported queue's row with its report.

    Args:
        state_url: the state store's URL (``PLATFORM_STATE_URL``).
        reports: one pass's reports.
        pool: the pool's name.
        restarts: restarts so far, by queue.
    """
    store = open_store(state_url)
    mark = store.placeholder
    columns = "queue, pool, backlog, workers, desired, reason, acted, dry_run, actions_up, actions_down, restarts, at"
    marks = ", ".join([mark] * 12)
    updates = ", ".join(f"{name} = excluded.{name}" for name in columns.split(", ")[1:])
    with store.transaction() as db:
        db.execute(SCHEMA)
        for report in reports:
            db.execute(
                f"INSERT INTO scale_decisions ({columns}) VALUES ({marks}) "
                f"ON CONFLICT (queue) DO UPDATE SET {updates}",
                (
                    report.queue,
                    pool,
                    report.backlog,
                    report.workers,
                    report.desired,
                    report.reason,
                    int(report.acted),
                    int(report.dry_run),
                    report.actions_up,
                    report.actions_down,
                    restarts.get(report.queue, 0),
                    report.at,
                ),
            )


def read_decisions(state_url: str) -> dict[str, ScaleRecord]:
    """Every queue's stored decision, by queue (empty when no engine ever wrote one)."""
    store = open_store(state_url)
    with store.transaction() as db:
        db.execute(SCHEMA)
        rows: Any = db.execute(
            "SELECT queue, pool, backlog, workers, desired, reason, acted, dry_run,"
            " actions_up, actions_down, restarts, at FROM scale_decisions ORDER BY queue"
        ).fetchall()
    records = {}
    for queue, pool, backlog, workers, desired, reason, acted, dry_run, up, down, restarts, at in rows:
        report = QueueReport(
            queue=queue,
            backlog=None if backlog is None else int(backlog),
            workers=int(workers),
            desired=int(desired),
            reason=reason,
            acted=bool(acted),
            at=float(at),
            actions_up=int(up),
            actions_down=int(down),
            dry_run=bool(dry_run),
        )
        records[queue] = ScaleRecord(report, pool, int(restarts))
    return records


def live_decisions(state_url: str, interval: float, now: float | None = None) -> dict[str, ScaleRecord]:
    """The stored decisions an engine wrote recently (see :func:`live_within`); dry runs left out."""
    now = time.time() if now is None else now
    return {
        queue: record
        for queue, record in read_decisions(state_url).items()
        if record.live(now, interval) and not record.report.dry_run
    }
