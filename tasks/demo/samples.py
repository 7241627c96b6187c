"""The demo's sample work, as data: what to send and what should become of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The expected outcome of a task that should succeed (others expect an ``x-error-class``).
COMPLETED = "completed"


@dataclass(frozen=True)
class Sample:
    """One task to send, and what should become of it."""

    queue: str
    task: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    #: :data:`COMPLETED` or the expected ``x-error-class`` of its dead letter.
    expect: str
    #: What a reader should learn from it.
    story: str

    @property
    def call(self) -> str:
        """The call as a reader would write it: ``charge('order-1', 25.0, fail_times=2)``."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task.rsplit('.', 1)[-1]}({', '.join(parts)})"


def sample_work(run: str) -> list[Sample]:
    """The demo's tasks; ``run`` makes the order ids of this run unique."""

    def order(n: int) -> str:
        return f"order-{run}-{n}"

    ok = COMPLETED
    return [
        Sample("orders", "tasks.orders.create_order", (order(1), 25.0), {}, ok, "succeeds"),
        Sample("orders", "tasks.orders.create_order", (order(2), 99.5), {}, ok, "succeeds"),
        Sample("payments", "tasks.payments.charge", (order(1), 25.0), {}, ok, "succeeds"),
        Sample(
            "payments",
            "tasks.payments.charge",
            (order(2), 99.5),
            {"fail_times": 2},
            ok,
            "times out twice (transient), retried with backoff, then succeeds",
        ),
        Sample("inventory", "tasks.inventory.reserve", (order(1), "book", 1), {}, ok, "succeeds"),
        Sample(
            "inventory",
            "tasks.inventory.reserve",
            (order(2), "lamp", 1),
            {},
            "permanent",
            "sold out: breaks a business rule, to inventory.dlq at once",
        ),
        Sample("email", "tasks.email.send_confirmation", (order(1), "ada@example.com"), {}, ok, "succeeds"),
        Sample(
            "email",
            "tasks.email.send_confirmation",
            (order(2), "not-an-address"),
            {},
            "unknown",
            "no '@': unexpected error, retried twice, then to email.dlq",
        ),
        Sample(
            "analytics", "tasks.analytics.track", ("order.created", {"order": order(1)}), {}, ok, "succeeds"
        ),
        Sample("analytics", "tasks.analytics.track", ("page.viewed", {"path": "/"}), {}, ok, "succeeds"),
    ]


def samples_for(queues: Iterable[str], run: str) -> tuple[list[Sample], list[str]]:
    """The sample work for the configured ``queues`` (``PLATFORM_QUEUES``).

    Returns:
        The samples whose queue is configured, and the sample queues that are
        not (sorted), whose samples are left out.
    """
    configured = set(queues)
    samples = sample_work(run)
    skipped = sorted({sample.queue for sample in samples} - configured)
    return [sample for sample in samples if sample.queue in configured], skipped
