"""The analytics service's tasks (queue ``analytics``)."""

from __future__ import annotations

from config import app


@app.task(name="tasks.analytics.track")
def track(event: str, properties: dict[str, object]) -> str:
    """Record an analytics event."""
    return f"tracked {event} with {len(properties)} properties"
