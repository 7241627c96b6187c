"""Command line: ``celery -A config pubsub ...`` (a Celery sub-command).

::

    celery -A config pubsub schema-check [--update]      # CI: fail on a breaking schema change
    celery -A config pubsub backfill fraud --from-start  # replay the event log to a new subscriber
    celery -A config pubsub backfill fraud --since 2026-11-20T00:00:00Z
    celery -A config pubsub show EVENT_ID [--json]       # who processed, retries, dead-lettered it
    celery -A config pubsub subscriptions                # services, queues, patterns, handlers

Registered through Celery's ``celery.commands`` entry point (``events``). The
command is called ``pubsub`` because Celery's own ``celery events`` (the event
monitor) takes precedence over a plugin of that name. Exit codes:
0 success, 2 bad usage (for ``show``: an id no producer sends, or one that is
not a UUID and that no subscriber has), 3 broker unreachable, 5 breaking schema
change or missing snapshot, 6 unknown service.
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from config.app import platform_config
from workers.errors import PublishError
from workers.ops.cli.common import EXIT_BROKER_UNREACHABLE, EXIT_USAGE, app_of, fail, json_option

EXIT_SCHEMA_BREAKING = 5
EXIT_UNKNOWN_SERVICE = 6

#: Where the event catalog lives (imported by name: workers never import tasks statically).
DEFAULT_REGISTRY = "tasks.events.catalog:REGISTRY"


@click.group(name="pubsub")
@click.pass_context
def events(ctx: click.Context) -> None:
    """Events: schemas, backfill for new subscribers, where one event stands."""


def _load(path: str) -> tuple[Any, Path]:
    module_name, _, attribute = path.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute or "REGISTRY"), Path(module.__file__ or ".").parent / "schemas"


@events.command("schema-check")
@click.option(
    "--registry", default=DEFAULT_REGISTRY, show_default=True, help="module:attribute of the registry."
)
@click.option("--snapshots", type=click.Path(file_okay=False, path_type=Path), help="Snapshot directory.")
@click.option("--update", is_flag=True, help="Write snapshots of new schemas and additive changes.")
def schema_check(registry: str, snapshots: Path | None, update: bool) -> None:
    """Check the event schemas against their committed JSON Schema snapshots.

    Fails (exit 5) on a backward-incompatible change: a field removed or
    retyped, a new required field without a default; or when a schema has no
    snapshot yet (write it with --update and commit it).
    """
    from workers.events.schemas import check_snapshots

    schemas, default_directory = _load(registry)
    directory = snapshots or default_directory
    report = check_snapshots(schemas, directory, update=update)
    for name, problems in report.breaking.items():
        for problem in problems:
            click.echo(f"BREAKING {name}: {problem}", err=True)
    for name, changes in report.additive.items():
        for change in changes:
            click.echo(f"additive {name}: {change}")
    for name in report.missing_snapshots:
        click.echo(
            f"MISSING  {name}: no snapshot in {directory} (run with --update, then commit it)", err=True
        )
    for name in report.orphan_snapshots:
        click.echo(
            f"ORPHAN   {name}: a snapshot with no schema (a removed version breaks consumers)", err=True
        )
    for name in report.written:
        click.echo(f"wrote    {name}")
    if report.breaking:
        click.echo("breaking changes need a new version of the event type (e.g. order.created.v2)", err=True)
    if not report.ok:
        sys.exit(EXIT_SCHEMA_BREAKING)
    click.echo(f"{len(schemas)} event schemas are compatible with their snapshots")


@events.command("subscriptions")
@click.pass_context
def subscriptions(ctx: click.Context) -> None:
    """List the subscribing services: queue, patterns and handlers."""
    app = app_of(ctx)
    for subscription in platform_config(app).subscriptions:
        click.echo(f"{subscription.service}: queue {subscription.queue}")
        for pattern, handler in subscription.handlers:
            click.echo(f"  {pattern} -> {handler}")


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@events.command("backfill")
@click.argument("service")
@click.option("--from-start", is_flag=True, help="Replay from the first event the log still holds.")
@click.option("--since", help="Replay events logged at or after this ISO 8601 time.")
@click.pass_context
def backfill(ctx: click.Context, service: str, from_start: bool, since: str | None) -> None:
    """Replay past events from the event log into SERVICE's queue.

    Live events keep arriving meanwhile; an event that arrives both ways is
    handled once (handlers are idempotent by event id).
    """
    from workers.ops.backfill import backfill_subscriber

    if from_start == (since is not None):
        raise click.UsageError("give exactly one of --from-start or --since")
    app = app_of(ctx)
    by_service = {s.service: s for s in platform_config(app).subscriptions}
    if service not in by_service:
        fail(
            f"no subscription for service {service!r} (known: {', '.join(by_service)})", EXIT_UNKNOWN_SERVICE
        )
    try:
        result = backfill_subscriber(app, by_service[service], since=_since(since))
    except PublishError as exc:
        fail(str(exc), EXIT_BROKER_UNREACHABLE)
    click.echo(
        f"backfilled {result.copied} events into {by_service[service].queue} "
        f"({result.scanned} read from the log, {result.skipped} not subscribed)"
    )


@events.command("show")
@click.argument("event_id")
@json_option
@click.pass_context
def show(ctx: click.Context, event_id: str, as_json: bool) -> None:
    """Where EVENT_ID stands at each subscriber: processed, retrying, dead-lettered.

    An id that can't be an event's (empty, control characters, too long), or
    that is not a UUID and that no subscriber has, is bad usage (exit 2).
    """
    from workers.ops.event_status import event_id_problem, event_status, unknown_id_problem

    problem = event_id_problem(event_id)
    if problem is not None:
        fail(problem, EXIT_USAGE)
    app = app_of(ctx)
    try:
        rows = event_status(app, event_id)
    except PublishError as exc:
        fail(str(exc), EXIT_BROKER_UNREACHABLE)
    problem = unknown_id_problem(event_id, rows)
    if problem is not None:
        fail(problem, EXIT_USAGE)
    if as_json:
        click.echo(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    for row in rows:
        click.echo(f"{row.service:<16} {row.state:<14} {row.detail}")
