"""The command line: ``python -m tasks.demo [--timeout S]``.

Exit codes:

- 0: every task settled as its sample expects (and, with the seed's
  subscriptions, every order saga ended as its case expects);
- 1: anything else: the broker can't be reached or was lost, no worker
  consumes a sample queue (nothing is sent then), the work did not settle
  before the timeout, an outcome was not the expected one, or the reader of
  the output went away (``| head``).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence

from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError

from config import app
from config.app import platform_config
from config.subscriptions import Subscription
from tasks import demo
from tasks.demo.follow import Follower, idle_queues
from tasks.demo.report import Out, print_event, print_idle, print_sent, print_summary
from tasks.demo.saga import run_saga_tour
from tasks.demo.samples import samples_for
from workers.broker import declare_topology, masked_url, settings_connection

#: Seconds to wait for the work to settle, unless ``--timeout`` says otherwise.
DEFAULT_TIMEOUT = 90.0
#: The handler that starts the order saga's work: when it is subscribed, the tour shows the saga.
SAGA_FIRST_HANDLER = "tasks.saga.payments.charge"
#: Seconds to wait for the broker to answer the first connection.
CONNECT_TIMEOUT = 5.0


def run(timeout: float, out: Out = print) -> int:
    """Run the demo; returns the exit code (0 as expected, 1 otherwise)."""
    config = platform_config(app)
    settings = config.settings
    samples, skipped = samples_for(settings.queues, uuid.uuid4().hex[:4])

    with settings_connection(settings, CONNECT_TIMEOUT) as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except Exception as exc:  # noqa: BLE001 - any failure: tell the user where to look
            out(f"Cannot reach RabbitMQ at {masked_url(connection)}: {exc}")
            out("Start it with: make broker")
            return 1
        out(f"Platform demo on {masked_url(connection)}")
        declare_topology(connection, config.topology)
        idle = idle_queues(connection, (sample.queue for sample in samples))
        if idle:
            print_idle(idle, out)
            return 1

        follower = Follower(settings, config.topology)
        follower.send(samples)
        print_sent(samples, skipped, out)
        event_id = follower.publish_event(uuid.uuid4().hex[:4], config.subscriptions)
        if event_id:
            print_event(event_id, config.subscriptions, settings.events_exchange, out)

        out(f"\nWaiting for the work to settle (at most {timeout:g}s)...")
        took = follower.wait(connection, timeout)
    print_summary(follower, settings, took, timeout, out)
    if took is None:
        return 1
    sagas_ok = True
    if saga_subscribed(config.subscriptions):
        sagas_ok = run_saga_tour(uuid.uuid4().hex[:4], timeout, out)
    return 1 if follower.surprises() or not sagas_ok else 0


def saga_subscribed(subscriptions: Sequence[Subscription]) -> bool:
    """Whether the order saga's payment service is subscribed (the seed's file does it)."""
    return any(s.handler_for("order.created") == SAGA_FIRST_HANDLER for s in subscriptions)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tasks.demo", description=(demo.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the work to settle"
    )
    args = parser.parse_args(argv)
    try:
        return run(args.timeout)
    except BrokenPipeError:  # the reader went away (``| head``): not a broker problem
        return 1
    except (OSError, OperationalError, AMQPError) as exc:
        print(f"demo: lost the broker: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
