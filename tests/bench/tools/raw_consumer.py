"""The broker's limit: a raw py-amqp consume+ack loop (``python -m tests.bench.tools.raw_consumer``).

Consumes ``--queue`` with ``--prefetch`` unacked messages at most, acks each
one as it arrives and counts it (``BENCH_COUNTER``), until it is killed.
"""

from __future__ import annotations

import argparse
import os

import amqp

from tests.bench.apps import marks
from workers.broker import amqp_connection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefetch", type=int, default=100)
    options = parser.parse_args()
    connection = amqp_connection(os.environ["CELERY_BROKER_URL"], timeout=10)
    channel = connection.channel()
    channel.basic_qos(0, options.prefetch, False)

    def on_message(message: amqp.Message) -> None:
        channel.basic_ack(message.delivery_tag)
        marks.count()

    channel.basic_consume(options.queue, callback=on_message)
    while True:
        connection.drain_events()


if __name__ == "__main__":
    main()
