"""Command line: ``celery -A config topology ...`` (a Celery sub-command).

Registered through Celery's ``celery.commands`` entry point. Exit codes:
0 success, 2 bad usage, 3 broker unreachable (:mod:`~workers.ops.cli.common`),
4 topology conflict.
"""

from __future__ import annotations

import json
from typing import Any

import click

from config.app import platform_config
from workers.broker import TopologyConflict, declare_topology, queue_depth
from workers.ops.cli.common import app_of, broker_connection, fail, json_option

EXIT_TOPOLOGY_CONFLICT = 4


@click.group(name="topology")
@click.pass_context
def topology(ctx: click.Context) -> None:
    """Declare or inspect the platform's RabbitMQ topology."""


@topology.command()
@click.pass_context
def declare(ctx: click.Context) -> None:
    """Declare every exchange, work, delay and dead-letter queue (idempotent)."""
    app = app_of(ctx)
    with broker_connection(app) as connection:
        try:
            count = declare_topology(connection, platform_config(app).topology)
        except TopologyConflict as exc:
            fail(str(exc), EXIT_TOPOLOGY_CONFLICT)
    click.echo(f"declared {count} queues and {len(platform_config(app).topology.exchanges())} exchanges")


@topology.command()
@json_option
@click.pass_context
def show(ctx: click.Context, as_json: bool) -> None:
    """List every queue of the topology with its depth and consumers."""
    app = app_of(ctx)
    topo = platform_config(app).topology
    rows: list[dict[str, Any]] = []
    with broker_connection(app) as connection:
        for queue in topo.all_queues():
            depth = queue_depth(connection, queue.name)
            rows.append(
                {
                    "queue": queue.name,
                    "type": (getattr(queue, "queue_arguments", None) or {}).get("x-queue-type", "classic"),
                    "messages": depth.messages if depth else None,
                    "consumers": depth.consumers if depth else None,
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'queue':32} {'type':8} {'messages':>9} {'consumers':>9}")
    for row in rows:
        messages = "missing" if row["messages"] is None else row["messages"]
        consumers = "-" if row["consumers"] is None else row["consumers"]
        click.echo(f"{row['queue']:32} {row['type']:8} {messages!s:>9} {consumers!s:>9}")
