"""How late delayed tasks reach their work queue: a histogram per worker, kept in the state store.

Lateness is the time from a delayed task's due time (``x-delay-due-at``) to
its receipt by a worker: the delay levels' dead-lettering hops plus the
wait in the work queue. Each worker main process counts it in a
:class:`LatenessHistogram` and writes its counts to the state store (the
idempotency store's database, table ``delay_lateness``, one row per worker)
every few seconds; the metrics endpoint sums the rows into the Prometheus
histogram ``platform_delay_lateness_seconds``. Counts only grow, so a worker
that stopped keeps its row and the sum stays a valid counter.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from workers.delivery.idempotency import open_store

#: Upper bounds of the buckets, in seconds (a last, infinite one is implied).
BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS delay_lateness ("
    " worker TEXT PRIMARY KEY,"
    " counts TEXT NOT NULL,"
    " total DOUBLE PRECISION NOT NULL,"
    " observations BIGINT NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL)"
)


@dataclass
class LatenessHistogram:
    """Cumulative counts of lateness observations (pure)."""

    #: Observations at or under each bound of :data:`BUCKETS`, then all of them.
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    observations: int = 0

    def observe(self, seconds: float) -> None:
        """Count one arrival ``seconds`` after its due time (an early one counts as 0)."""
        seconds = max(seconds, 0.0)
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[index] += 1
        self.counts[-1] += 1
        self.total += seconds
        self.observations += 1

    def add(self, other: LatenessHistogram) -> None:
        """Add ``other``'s counts to these."""
        self.counts = [mine + theirs for mine, theirs in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.observations += other.observations


class LatenessRecorder:
    """One worker's histogram, written to the state store by :meth:`flush`."""

    def __init__(self, state_url: str, worker: str) -> None:
        self.state_url = state_url
        self.worker = worker
        self.histogram = LatenessHistogram()
        self._flushed = 0

    def observe(self, seconds: float) -> None:
        self.histogram.observe(seconds)

    def flush(self) -> None:
        """Write the counts, if there are new ones, as this worker's row."""
        if self.histogram.observations == self._flushed:
            return
        store = open_store(self.state_url)
        mark = store.placeholder
        with store.transaction() as db:
            db.execute(SCHEMA)
            db.execute(
                "INSERT INTO delay_lateness (worker, counts, total, observations, updated_at) "
                f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT (worker) DO UPDATE SET "
                "counts = excluded.counts, total = excluded.total, "
                "observations = excluded.observations, updated_at = excluded.updated_at",
                (
                    self.worker,
                    json.dumps(self.histogram.counts),
                    self.histogram.total,
                    self.histogram.observations,
                    time.time(),
                ),
            )
        self._flushed = self.histogram.observations


def read_lateness(state_url: str) -> LatenessHistogram:
    """Every worker's counts added up (an empty histogram when no worker wrote any)."""
    store = open_store(state_url)
    summed = LatenessHistogram()
    with store.transaction() as db:
        db.execute(SCHEMA)
        rows: Any = db.execute("SELECT counts, total, observations FROM delay_lateness").fetchall()
    for counts, total, observations in rows:
        parsed = json.loads(counts)
        if len(parsed) == len(summed.counts):
            summed.add(LatenessHistogram(parsed, float(total), int(observations)))
    return summed
