"""Move every dead letter of ``QUEUE.dlq`` back to ``QUEUE``, timed (``python -m tests.bench.tools.mover``).

- ``platform QUEUE``: the platform's replay, :func:`workers.ops.dlq.replaying.replay`,
  called the way ``celery -A config dlq replay QUEUE --json`` calls it (through
  :func:`workers.ops.dlq.actions.replay_and_audit`): the app's connection
  (already connected), the publish timeout as confirm timeout, the re-failure
  ratio setting, no filter, no rate limit, no progress bar. The CLI's audit
  record, written after the replay returns, is not timed.
- ``raw QUEUE``: the plainest loop with the same guarantee, on py-amqp:
  ``basic_get`` from the DLQ, publish a copy to ``QUEUE`` (default exchange,
  mandatory) and wait for that publish's confirm, then ack the dead letter.

Both read the DLQ's depth first and move that many; the clock (and, when the
suite asks, the profiler) runs from just before the first channel is opened to
the last ack and the channel's close; imports and the connection come first.
Prints one JSON line: ``{"moved": N, "seconds": S}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import amqp

from config.app import platform_config
from tests.bench.apps.profiling import profiled


def platform_move(queue: str) -> tuple[int, float]:
    """The platform's replay of every letter in ``queue``'s DLQ; (moved, seconds).

    Raises:
        RuntimeError: the replay stopped early.
    """
    from config import app
    from workers.ops.dlq.replaying import replay

    settings = platform_config(app).settings
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        with profiled("mover"):
            started = time.perf_counter()
            result = replay(
                connection,
                queue,
                confirm_timeout=settings.publish_timeout,
                max_refail_ratio=settings.replay_max_refail_ratio,
            )
            seconds = time.perf_counter() - started
    if result.stopped:
        raise RuntimeError(f"the replay stopped ({result.stopped}) after {result.replayed}: {result.error}")
    return result.replayed, seconds


def raw_move(queue: str) -> tuple[int, float]:
    """Get, publish, wait for the confirm, ack: every letter of ``queue``'s DLQ; (moved, seconds)."""
    from tests.support.broker import Vhost

    dead_letter_queue = f"{queue}.dlq"
    with Vhost(os.environ["BENCH_VHOST"]).connect() as connection, profiled("mover"):
        started = time.perf_counter()
        channel = connection.channel()
        channel.confirm_select()
        _, total, _ = channel.queue_declare(dead_letter_queue, passive=True)
        moved = 0
        for _ in range(total):
            message = channel.basic_get(dead_letter_queue, no_ack=False)
            if message is None:
                break
            copy = amqp.Message(message.body, **message.properties)
            channel.basic_publish_confirm(copy, exchange="", routing_key=queue, mandatory=True)
            channel.basic_ack(message.delivery_tag)
            moved += 1
        channel.close()
        return moved, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("how", choices=["platform", "raw"])
    parser.add_argument("queue")
    options = parser.parse_args()
    move = platform_move if options.how == "platform" else raw_move
    moved, seconds = move(options.queue)
    print(json.dumps({"moved": moved, "seconds": seconds}), flush=True)
    # Celery's pooled connections would otherwise hold the exit a while.
    os._exit(0)


if __name__ == "__main__":
    main()
