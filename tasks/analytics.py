"""The analytics service's tasks (queue ``analytics``)."""

from __future__ import annotations

import time

from config import app


@app.task(name="tasks.analytics.track")
def track(event: str, properties: dict[str, object]) -> str:
    """Record an analytics event."""
    return f"tracked {event} with {len(properties)} properties"


@app.task(name="tasks.analytics.rollup")
def rollup(batch: int, millis: float) -> int:
    """Fold one batch of events into the hourly rollups; ``millis`` stands in for the I/O it waits on.

    ``make demo BURST=1`` sends thousands at once, to show the autoscaler absorb them.
    """
    time.sleep(max(0.0, millis) / 1000)
    return batch
