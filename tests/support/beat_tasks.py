"""Periodic tasks and their beat schedule, for tests (loaded by beat and by test workers).

Add ``tests.support.beat_tasks`` to ``PLATFORM_TASK_MODULES`` and both
``celery -A config beat`` and ``celery -A config worker`` import it: beat
reads ``app.conf.beat_schedule`` only after it has imported the task modules
(``Beat.init_loader`` runs before the scheduler is built), so a task module
may declare its own entries with :meth:`celery.Celery.add_periodic_task`,
which adds named entries to ``app.conf.beat_schedule`` without replacing
those of other modules.

The task names carry the queue they are routed to (``route_by_module``): the
two ``orders`` tasks run on ``orders``, the two ``payments`` ones on
``payments``. Each task records its runs in the test ledger
(:func:`tests.support.tasks.record`) under its own event names, with what the
platform's publisher put on the message (beat's ``celery_beat_task`` header,
``x-retry-count``, ``x-delay-due-at``).
"""

from __future__ import annotations

import time

from celery.beat import BeatLazyFunc

from config import app
from tests.support.tasks import record
from workers.errors import PermanentError, TransientError

#: Seconds between two runs of every entry.
INTERVAL = 2.0
#: The countdown of the delayed entry: each run waits this long in the broker's delay levels.
COUNTDOWN = 1.0


def _how_it_came(request: object) -> str:
    """Whether beat sent the message (its header), and the routing key it reached the worker with."""
    delivery = getattr(request, "delivery_info", None) or {}
    return f"beat={getattr(request, 'celery_beat_task', None)} routing_key={delivery.get('routing_key')}"


@app.task(bind=True, name="tests.beat.orders.tick", shared=False)
def tick(self) -> None:
    """Succeeds: one ``tick`` line per run."""
    record("tick", self.request.id, _how_it_came(self.request))


@app.task(
    bind=True, name="tests.beat.payments.retrying_tick", retry_base=0.2, retry_jitter_max=0.1, shared=False
)
def retrying_tick(self) -> None:
    """Times out on the first attempt of every run, succeeds on its retry (through ``payments.retry.1``)."""
    retry_count = getattr(self.request, "x-retry-count", None)
    record(
        "retrying-attempt",
        self.request.id,
        f"{self.request.retries} x-retry-count={retry_count} {_how_it_came(self.request)}",
    )
    if self.request.retries < 1:
        raise TransientError("the gateway timed out on this run's first attempt")
    record("retrying-done", self.request.id)


@app.task(bind=True, name="tests.beat.orders.rejected_tick", shared=False)
def rejected_tick(self) -> None:
    """Fails for good on every run: straight to ``orders.dlq``."""
    record("rejected-attempt", self.request.id, str(self.request.retries))
    raise PermanentError("the nightly report is misconfigured")


@app.task(bind=True, name="tests.beat.payments.delayed_tick", shared=False)
def delayed_tick(self, published_at: float) -> None:
    """Runs ``COUNTDOWN`` after beat published it; records when beat published it and when it was due."""
    due_at = getattr(self.request, "x-delay-due-at", None)
    record("delayed-done", self.request.id, f"{published_at:.6f} {due_at} eta={self.request.eta}")


app.add_periodic_task(INTERVAL, tick.s(), name="tick")
app.add_periodic_task(INTERVAL, retrying_tick.s(), name="retrying-tick")
app.add_periodic_task(INTERVAL, rejected_tick.s(), name="rejected-tick")
# Evaluated by beat each time it sends the entry: the task learns when it was published.
app.add_periodic_task(
    INTERVAL, delayed_tick.s(BeatLazyFunc(time.time)), name="delayed-tick", countdown=COUNTDOWN
)
