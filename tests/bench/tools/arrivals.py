"""When delayed tasks reach their work queue (``python -m tests.bench.tools.arrivals``).

A raw py-amqp consumer, always waiting on ``--queue`` (prefetch 100): for each
message it writes one line ``<due> <arrival>`` (unix seconds) to
``BENCH_STAMPS`` and acks it. ``<due>`` is the message's ``x-delay-due-at``
header (the due time the platform wrote when it sent the message into its delay
levels), ``-1`` when it has none (an immediate warm-up task); ``<arrival>`` is
``time.time()`` as the message is handed to the consumer. Runs until killed.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime

import amqp

from workers.broker import amqp_connection
from workers.delivery.headers import DELAY_DUE_AT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefetch", type=int, default=100)
    options = parser.parse_args()
    connection = amqp_connection(os.environ["CELERY_BROKER_URL"], timeout=10)
    channel = connection.channel()
    channel.basic_qos(0, options.prefetch, False)
    out = os.open(os.environ["BENCH_STAMPS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def on_message(message: amqp.Message) -> None:
        arrival = time.time()
        headers = message.properties.get("application_headers") or {}
        due_at = headers.get(DELAY_DUE_AT)
        due = datetime.fromisoformat(str(due_at)).timestamp() if due_at else -1.0
        os.write(out, f"{due:.6f} {arrival:.6f}\n".encode())
        channel.basic_ack(message.delivery_tag)

    channel.basic_consume(options.queue, callback=on_message)
    while True:
        connection.drain_events()


if __name__ == "__main__":
    main()
