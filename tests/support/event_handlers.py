"""Event handlers for tests: each records what it handled in the ledger.

Ledger lines: ``handled <task id> <time> <service> <worker node> <order id>``;
the task id is ``<service>:<event id>``. Loaded by test workers through the
subscriptions file the test writes (the handler's module is imported).
"""

from __future__ import annotations

import os
import time

from celery import current_task

from tasks.events.catalog import REGISTRY, EventData, OrderCreated
from tasks.events.handlers import Event, event_handler
from tests.support.tasks import record
from workers.errors import PermanentError, TransientError


class DocumentUploaded(EventData):
    """``document.uploaded`` (tests only): big enough to need claim-check."""

    name: str
    note: str


if REGISTRY.schema("document.uploaded") is None:
    REGISTRY.register("document.uploaded", DocumentUploaded)


def _record(service: str, event: Event[OrderCreated]) -> None:
    request = current_task.request
    record("handled", request.id, f"{service} {request.hostname} {event.data.order_id}")


@event_handler("tests.events.email")
def email(event: Event[OrderCreated]) -> None:
    _record("email", event)


@event_handler("tests.events.analytics")
def analytics(event: Event[OrderCreated]) -> None:
    _record("analytics", event)


@event_handler("tests.events.inventory")
def inventory(event: Event[OrderCreated]) -> None:
    _record("inventory", event)


@event_handler("tests.events.fraud")
def fraud(event: Event[OrderCreated]) -> None:
    _record("fraud", event)


@event_handler("tests.events.slow")
def slow(event: Event[OrderCreated]) -> None:
    """Takes ``PLATFORM_TEST_SLOW_SECONDS`` (default 1 s) per event."""
    time.sleep(float(os.environ.get("PLATFORM_TEST_SLOW_SECONDS", "1")))
    _record("slow", event)


@event_handler("tests.events.flaky", retry_base=0.1, retry_jitter_max=0.05)
def flaky(event: Event[OrderCreated]) -> None:
    """Times out on the first attempt, then succeeds."""
    request = current_task.request
    record("attempt", request.id, str(request.retries))
    if not request.retries:
        raise TransientError("first attempt times out")
    _record("flaky", event)


@event_handler("tests.events.large")
def large(event: Event[DocumentUploaded]) -> None:
    """Records the size of the data it received (a claim-checked payload)."""
    request = current_task.request
    record("handled", request.id, f"large {len(event.data.note)}")


@event_handler("tests.events.stuck", retry_base=60.0, retry_jitter_max=0.1)
def stuck(event: Event[OrderCreated]) -> None:
    """Always times out; each retry waits a minute in the broker."""
    raise TransientError("upstream is down")


#: What tests.events.rejecting fails with: a script payload the pages must render as text.
REJECTION = "order {order_id} rejected: <script>alert(1)</script>"


@event_handler("tests.events.rejecting")
def rejecting(event: Event[OrderCreated]) -> None:
    """Always refuses the order (permanent: dead-lettered at once), naming it in a script payload."""
    raise PermanentError(REJECTION.format(order_id=event.data.order_id))
