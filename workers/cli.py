"""Command line: ``celery -A config topology ...`` (a Celery sub-command).

Registered through Celery's ``celery.commands`` entry point. Exit codes:
0 success, 2 bad usage, 3 broker unreachable, 4 topology conflict.
"""

from __future__ import annotations

import json
import sys

import click
from kombu.exceptions import OperationalError

from workers.broker import TopologyConflict, declare_topology, queue_depth

EXIT_BROKER_UNREACHABLE = 3
EXIT_TOPOLOGY_CONFLICT = 4


@click.group(name="topology")
@click.pass_context
def topology(ctx: click.Context) -> None:
    """Declare or inspect the platform's RabbitMQ topology."""


def _app(ctx: click.Context):
    return ctx.find_root().obj.app


@topology.command()
@click.pass_context
def declare(ctx: click.Context) -> None:
    """Declare every exchange, work, delay and dead-letter queue (idempotent)."""
    app = _app(ctx)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            count = declare_topology(connection, app.conf.platform_topology)
    except TopologyConflict as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_TOPOLOGY_CONFLICT)
    except (OperationalError, OSError) as exc:
        click.echo(f"error: broker unreachable at {app.conf.broker_url}: {exc}", err=True)
        sys.exit(EXIT_BROKER_UNREACHABLE)
    click.echo(f"declared {count} queues and 2 exchanges")


@topology.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """List every queue of the topology with its depth and consumers."""
    app = _app(ctx)
    topo = app.conf.platform_topology
    rows = []
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            for queue in topo.all_queues():
                depth = queue_depth(connection, queue.name)
                rows.append(
                    {
                        "queue": queue.name,
                        "type": queue.queue_arguments.get("x-queue-type", "classic"),
                        "messages": depth.messages if depth else None,
                        "consumers": depth.consumers if depth else None,
                    }
                )
    except (OperationalError, OSError) as exc:
        click.echo(f"error: broker unreachable at {app.conf.broker_url}: {exc}", err=True)
        sys.exit(EXIT_BROKER_UNREACHABLE)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'queue':32} {'type':8} {'messages':>9} {'consumers':>9}")
    for row in rows:
        messages = "missing" if row["messages"] is None else row["messages"]
        consumers = "-" if row["consumers"] is None else row["consumers"]
        click.echo(f"{row['queue']:32} {row['type']:8} {messages!s:>9} {consumers!s:>9}")
