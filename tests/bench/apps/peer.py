"""Dramatiq actors for the peer comparison (``dramatiq tests.bench.apps.peer``).

The broker is Dramatiq's ``RabbitmqBroker`` with its defaults: messages are
acked only after the actor returns (Dramatiq's reliable delivery), queues are
classic with a ``.XQ`` dead-letter queue. ``CELERY_BROKER_URL`` names the vhost.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from tests.bench.apps import marks

#: The queue the actors use.
QUEUE = "bench"

broker = RabbitmqBroker(url=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench.noop", queue_name=QUEUE, max_retries=0)
def noop() -> None:
    """Do nothing; count the completion."""
    marks.count()


@dramatiq.actor(actor_name="bench.stamp", queue_name=QUEUE, max_retries=0)
def stamp(sent: float) -> None:
    """Record when this message, sent at ``sent``, started."""
    marks.stamp(sent)
