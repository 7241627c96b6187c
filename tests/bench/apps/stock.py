"""A plain Celery app, configured like users configure stock Celery 5.7.

``celery -A tests.bench.apps.stock worker`` runs it. ``BENCH_STOCK_MODE`` picks
the configuration (:data:`MODES`); ``CELERY_BROKER_URL`` the broker.

- ``defaults``: nothing changed: early ack, prefetch multiplier 4, a classic
  queue ``celery`` on the direct exchange ``celery``.
- ``acks_late_quorum``: ``task_acks_late``, prefetch multiplier 1, a quorum
  queue. Celery 5.7 turns on its native delayed delivery when it sees a quorum
  queue, and that step can't bind a queue on a *direct* exchange (the worker
  then stalls on ETA tasks, see FACTS.md). So the queue sits on a *topic*
  exchange ``celery`` with routing key ``celery``, the set-up Celery's docs
  ask for; ``worker_detect_quorum_queues`` stays on (its default), which turns
  global QoS off as quorum queues require.
- ``acks_late_classic``: ``task_acks_late``, prefetch multiplier 1, a classic
  queue (the retry storm: countdown retries on a classic queue).
- ``confirm``: ``acks_late_quorum`` plus ``confirm_publish=True`` (the enqueue
  case's stock publisher).
- ``solo_late_quorum``: ``acks_late_quorum`` with prefetch multiplier 2, for
  solo worker processes (``tests.bench.tools.stock_group``): the platform's
  default layout and window, with nothing of the platform.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from tests.bench.apps import marks

#: The configurations a stock side can have.
MODES = ("defaults", "acks_late_quorum", "acks_late_classic", "confirm", "solo_late_quorum")
#: The stock queue (Celery's default name).
QUEUE = "celery"
#: Seconds a storm task's countdown retry is held before it runs again.
STORM_BACKOFF = int(float(os.environ.get("BENCH_STORM_BACKOFF", "60")))


class UpstreamUnavailable(Exception):
    """The transient failure of a storm task."""


def task_queue(mode: str) -> Queue:
    """The queue a stock app in ``mode`` consumes (and the suite pre-fills)."""
    if mode in ("acks_late_quorum", "confirm", "solo_late_quorum"):
        return Queue(
            QUEUE,
            Exchange(QUEUE, type="topic", durable=True),
            routing_key=QUEUE,
            queue_arguments={"x-queue-type": "quorum"},
        )
    return Queue(QUEUE, Exchange(QUEUE, type="direct", durable=True), routing_key=QUEUE)


def stock_config(mode: str, broker_url: str) -> dict[str, Any]:
    """Celery settings of a stock app in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown stock mode {mode!r}; one of {', '.join(MODES)}")
    config: dict[str, Any] = {"broker_url": broker_url, "task_queues": [task_queue(mode)]}
    if mode != "defaults":
        config.update(task_acks_late=True, worker_prefetch_multiplier=1)
    if mode == "solo_late_quorum":
        config["worker_prefetch_multiplier"] = 2
    if mode == "confirm":
        config["broker_transport_options"] = {"confirm_publish": True}
    return config


def build_app(mode: str, broker_url: str) -> Celery:
    """A stock Celery app in ``mode`` with the benchmark tasks registered."""
    stock = Celery("stock")
    stock.conf.update(stock_config(mode, broker_url))

    @stock.task(name="bench.noop")
    def noop() -> None:
        marks.count()

    @stock.task(name="bench.stamp")
    def stamp(sent: float) -> None:
        marks.stamp(sent)

    @stock.task(name="bench.sleep")
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @stock.task(name="bench.io")
    def io(seconds: float) -> None:
        time.sleep(seconds)
        marks.count()

    @stock.task(
        name="bench.storm",
        autoretry_for=(UpstreamUnavailable,),
        retry_backoff=STORM_BACKOFF,
        retry_backoff_max=STORM_BACKOFF,
        retry_jitter=False,
        max_retries=5,
    )
    def storm() -> None:
        marks.count_failure()
        raise UpstreamUnavailable("bench: upstream unavailable")

    return stock


#: The app ``celery -A tests.bench.apps.stock`` runs.
app = build_app(
    os.environ.get("BENCH_STOCK_MODE", "defaults"),
    os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
)
