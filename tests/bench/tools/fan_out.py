"""Publish N ``order.created`` events and wait until every subscriber queue holds them.

``python -m tests.bench.tools.fan_out HOW N --queues a.events,b.events,c.events``

- ``platform-batch``: :func:`tasks.events.publish_many` (pipelined, confirms
  waited for once; the platform's batch API) with all N events;
- ``platform-one``: :func:`tasks.events.publish`, one event at a time, each
  returning once confirmed;
- ``raw``: py-amqp, the same CloudEvents headers and body, to the topic exchange
  ``--exchange`` with 500 unconfirmed messages in flight
  (:func:`tests.bench.broker.publish_pipelined`).

One warm-up event goes first through the same API (connections, imports,
schema validation warmed alike). The clock starts just before the first of the
N events is prepared and stops when a passive ``queue.declare`` sees N + 1
messages in every queue of ``--queues`` (polled every 2 ms, with a deadline).
Prints one JSON line: ``{"sent": N, "seconds": S, "publish_seconds": P}``,
``publish_seconds`` being when the publishing call returned.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import amqp

from tests.bench.apps.profiling import profiled
from tests.bench.broker import QueueProbe, publish_pipelined
from tests.support.broker import Vhost
from tests.support.wait import wait_for

#: The event type every side publishes (it has a schema in the platform's catalog).
EVENT_TYPE = "order.created"
#: Events sent before the clock starts.
WARM_UP = 1
#: Seconds between two polls of the queue depths.
POLL = 0.002


def order(n: int) -> dict[str, Any]:
    """The data of the ``n``-th event (valid ``order.created``)."""
    return {"order_id": f"o-{n}", "amount": 10.0 + n, "customer_email": f"c{n}@example.com"}


def platform_batch(first: int, count: int) -> None:
    from tasks.events import publish_many

    publish_many([(EVENT_TYPE, order(n)) for n in range(first, first + count)])


def platform_one(first: int, count: int) -> None:
    from tasks.events import publish

    for n in range(first, first + count):
        publish(EVENT_TYPE, order(n))


def raw_events(first: int, count: int) -> Iterator[amqp.Message]:
    """CloudEvents in the AMQP binary binding, built the way any AMQP producer would."""
    for n in range(first, first + count):
        event_id = str(uuid.uuid4())
        headers = {
            "cloudEvents_specversion": "1.0",
            "cloudEvents_id": event_id,
            "cloudEvents_source": "/bench-raw",
            "cloudEvents_type": EVENT_TYPE,
            "cloudEvents_time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        body = json.dumps(order(n), separators=(",", ":")).encode()
        yield amqp.Message(
            body,
            content_type="application/json",
            content_encoding="utf-8",
            message_id=event_id,
            type=EVENT_TYPE,
            delivery_mode=2,
            timestamp=int(time.time()),
            application_headers=headers,
        )


def raw_sender(exchange: str) -> Callable[[int, int], None]:
    vhost = Vhost(os.environ["BENCH_VHOST"])

    def send(first: int, count: int) -> None:
        publish_pipelined(vhost, exchange, EVENT_TYPE, raw_events(first, count))

    return send


def wait_for_depths(probe: QueueProbe, queues: list[str], expected: int, timeout: float) -> None:
    """Wait until every queue holds ``expected`` ready messages.

    Raises:
        AssertionError: the deadline passed; says how far each queue got.
    """
    depths: dict[str, int] = {}

    def full() -> bool:
        depths.update({queue: probe.ready(queue) for queue in queues})
        return all(depth >= expected for depth in depths.values())

    wait_for(full, timeout=timeout, interval=POLL, message=lambda: f"{expected} in each queue, got {depths}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("how", choices=["platform-batch", "platform-one", "raw"])
    parser.add_argument("count", type=int)
    parser.add_argument("--queues", required=True, help="comma-separated subscriber queues")
    parser.add_argument("--exchange", default="bench.events", help="topic exchange of the raw side")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds the queues may take to fill")
    options = parser.parse_args()
    queues = [q for q in options.queues.split(",") if q]
    senders: dict[str, Callable[[int, int], None]] = {
        "platform-batch": platform_batch,
        "platform-one": platform_one,
    }
    send = senders[options.how] if options.how in senders else raw_sender(options.exchange)
    send(0, WARM_UP)
    with QueueProbe(Vhost(os.environ["BENCH_VHOST"])) as probe, profiled("fan-out"):
        started = time.perf_counter()
        send(WARM_UP, options.count)
        published = time.perf_counter()
        wait_for_depths(probe, queues, WARM_UP + options.count, options.timeout)
        finished = time.perf_counter()
    result = {"sent": options.count, "seconds": finished - started, "publish_seconds": published - started}
    print(json.dumps(result), flush=True)
    # Celery's pooled connections would otherwise hold the exit a while.
    os._exit(0)


if __name__ == "__main__":
    main()
