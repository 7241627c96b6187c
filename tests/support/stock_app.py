"""A stock Celery app (no platform), to show side by side what stock Celery does.

Its broker comes from ``STOCK_BROKER_URL``; its one queue ``stock`` is classic.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("stock", broker=os.environ.get("STOCK_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_default_queue="stock",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    accept_content=["json"],
)


@app.task(name="stock.noop", shared=False)
def noop() -> None:
    return None
