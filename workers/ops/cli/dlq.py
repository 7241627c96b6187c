"""Command line: ``celery -A config dlq ...`` (a Celery sub-command).

Registered through Celery's ``celery.commands`` entry point. Every command
takes ``--json`` for scripts and prints a readable table otherwise. The work
lives in :mod:`workers.ops.dlq` (replay and purge through its audited
actions); this module only parses, prints and maps errors to exit codes
(1 to 3 are every group's, :mod:`workers.ops.cli.common`):

====  ===========================================================
0     success
1     aborted at the confirmation prompt
2     bad usage: unknown option, bad filter value
3     broker unreachable (nothing was changed that is not confirmed)
4     unknown queue (not in the topology, or its DLQ does not exist)
5     replay stopped: too many replayed messages dead-lettered again
6     replay stopped: the broker refused or did not confirm a publish
====  ===========================================================

Every failure prints one line ``error: ...`` to stderr, never a traceback and
never the broker's password.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from config.app import platform_config
from config.topology import dead_letter_queue
from workers.broker import queue_depth
from workers.delivery.classify import ErrorClass
from workers.delivery.headers import ERROR_TRACEBACK
from workers.ops import dlq as ops
from workers.ops.cli.common import EXIT_ABORTED, app_of, broker_connection, emit_json, fail, json_option
from workers.ops.text import age_text

EXIT_UNKNOWN_QUEUE = 4
EXIT_REFAILURES = 5
EXIT_PUBLISH_FAILED = 6

#: Characters of a traceback ``show`` prints by default (the end, where the error is).
SHOW_TRACEBACK_CHARS = 1500
#: What ``replay --error-class`` accepts: the platform's classes and those of
#: letters the broker dead-lettered itself (``expired``, ``overflow``...).
ERROR_CLASS_CHOICES = list(
    dict.fromkeys([*(c.value for c in ErrorClass), *ops.BROKER_ERROR_CLASSES.values()])
)


@click.group(name="dlq")
def dlq() -> None:
    """Inspect, replay, purge and export dead-letter queues."""


class Context:
    """The Celery app's settings and topology, for one command."""

    def __init__(self, ctx: click.Context) -> None:
        self.app = app_of(ctx)
        self.settings = platform_config(self.app).settings
        self.topology = platform_config(self.app).topology

    def queue(self, name: str) -> str:
        """The work queue ``name`` names (``orders`` or ``orders.dlq``), or exit 4."""
        base = name[: -len(".dlq")] if name.endswith(".dlq") else name
        if base not in self.topology:
            fail(
                f"unknown queue {name!r}; the platform's queues are: {', '.join(self.topology.names)}",
                EXIT_UNKNOWN_QUEUE,
            )
        return base

    @contextmanager
    def broker(self) -> Iterator[Any]:
        """A connection (an unreachable broker exits 3, its URL masked); an unknown queue exits 4."""
        with broker_connection(self.app) as connection:
            try:
                yield connection
            except ops.UnknownQueue as exc:
                fail(f"{exc} (run: celery -A config topology declare)", EXIT_UNKNOWN_QUEUE)


# --------------------------------------------------------------------------- list


@dlq.command(name="list")
@json_option
@click.pass_context
def list_queues(ctx: click.Context, as_json: bool) -> None:
    """Every work queue: DLQ depth, age of the oldest dead letter, retry-queue depths."""
    context = Context(ctx)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    with context.broker() as connection:
        for work_queue in context.topology.work_queues:
            depth = queue_depth(connection, work_queue.dead_letter_queue)
            head = ops.browse(connection, work_queue.name, limit=1) if depth and depth.messages else []
            oldest = head[0].dead_lettered_at if head else None
            retries = {}
            for name in work_queue.retry_queues:
                retry_depth = queue_depth(connection, name)
                retries[name] = retry_depth.messages if retry_depth else None
            rows.append(
                {
                    "queue": work_queue.name,
                    "dead_letter_queue": work_queue.dead_letter_queue,
                    "dead_letters": depth.messages if depth else None,
                    "oldest_at": oldest,
                    "oldest_age_seconds": (now - oldest).total_seconds() if oldest else None,
                    "retry_queues": retries,
                    "retrying": sum(count or 0 for count in retries.values()),
                }
            )
    if as_json:
        emit_json(rows)
        return
    click.echo(f"{'queue':20} {'dlq':>7} {'oldest':>8}  {'retrying':>8}  per tier")
    for row in rows:
        dead = "missing" if row["dead_letters"] is None else row["dead_letters"]
        tiers = "/".join("-" if n is None else str(n) for n in row["retry_queues"].values())
        click.echo(
            f"{row['queue']:20} {dead!s:>7} {age_text(row['oldest_age_seconds']):>8}  {row['retrying']:>8}  {tiers}"
        )


# --------------------------------------------------------------------------- show


@dlq.command()
@click.argument("queue")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show at most N.")
@click.option(
    "--traceback-chars",
    type=click.IntRange(min=0),
    default=SHOW_TRACEBACK_CHARS,
    show_default=True,
    help="Keep the last N characters of each traceback.",
)
@json_option
@click.pass_context
def show(ctx: click.Context, queue: str, limit: int, traceback_chars: int, as_json: bool) -> None:
    """The dead letters of QUEUE with their headers and traceback; nothing is consumed."""
    context = Context(ctx)
    name = context.queue(queue)
    with context.broker() as connection:
        letters = ops.browse(connection, name, limit=limit)
    records = [ops.letter_record(letter, traceback_limit=traceback_chars) for letter in letters]
    if as_json:
        emit_json(records)
        return
    click.echo(f"{dead_letter_queue(name)}: showing {len(records)} (at most {limit})")
    for record in records:
        headers = record["headers"]
        click.echo("")
        click.echo(
            f"#{record['position']}  {record['task_id'] or '?'}  {record['task_name'] or '?'}  "
            f"[{record['error_class'] or '?'}] {record['error_type']}  group {record['group']}"
        )
        for key in sorted(headers):
            if key.startswith("x-") and key != ERROR_TRACEBACK:
                click.echo(f"    {key}: {headers[key]}")
        traceback = str(headers.get(ERROR_TRACEBACK) or "")
        if traceback:
            click.echo("    traceback:")
            for line in traceback.rstrip().splitlines():
                click.echo(f"      {line}")


# -------------------------------------------------------------------------- stats


@dlq.command()
@click.argument("queue")
@json_option
@click.pass_context
def stats(ctx: click.Context, queue: str, as_json: bool) -> None:
    """Count, age of the oldest, error groups and hourly trend of QUEUE's DLQ."""
    context = Context(ctx)
    name = context.queue(queue)
    with context.broker() as connection:
        letters = ops.browse(connection, name)
    result = ops.dlq_stats(name, letters, datetime.now(UTC))
    if as_json:
        emit_json(
            {
                "queue": result.queue,
                "dead_letter_queue": result.dead_letter_queue,
                "count": result.count,
                "oldest_at": result.oldest_at,
                "oldest_age_seconds": result.oldest_age_seconds,
                "inflow_last_hour": result.inflow_last_hour,
                "groups": [group.__dict__ for group in result.groups],
                "trend": [{"hour": hour, "count": count} for hour, count in result.trend],
            }
        )
        return
    click.echo(
        f"{result.dead_letter_queue}: {result.count} dead letters, oldest {age_text(result.oldest_age_seconds)}, "
        f"{result.inflow_last_hour} in the last hour"
    )
    click.echo("")
    click.echo(f"{'group':8} {'count':>6}  {'class':12} {'task':28} error")
    for group in result.groups:
        click.echo(
            f"{group.id:8} {group.count:>6}  {group.error_class or '?':12} {group.task_name or '?':28} "
            f"{group.error_type}: {group.sample_message[:80]}"
        )
    peak = max((count for _, count in result.trend), default=0)
    click.echo("")
    click.echo("per hour (UTC):")
    for hour, count in result.trend:
        if count or hour == result.trend[-1][0]:
            bar = "#" * (round(40 * count / peak) if peak else 0)
            click.echo(f"  {hour:%Y-%m-%d %H:00}  {count:>6}  {bar}")


# ------------------------------------------------------------------------- replay


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return ops.parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _group_ids(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for group in value:
        if len(group) != 8 or any(c not in "0123456789abcdef" for c in group):
            raise click.BadParameter(f"{group!r} is not a group id (8 hex digits, as `dlq stats` shows)")
    return value


@dlq.command(name="replay")
@click.argument("queue")
@click.option("--id", "ids", multiple=True, help="Only this task id (repeatable).")
@click.option(
    "--group", "groups", multiple=True, callback=_group_ids, help="Only this error group (repeatable)."
)
@click.option("--task", "tasks", multiple=True, help="Only this task name (repeatable).")
@click.option(
    "--error-class",
    "error_classes",
    multiple=True,
    type=click.Choice(ERROR_CLASS_CHOICES),
    help="Only this error class (repeatable): x-error-class, or the broker's reason as a class.",
)
@click.option("--error-type", "error_types", multiple=True, help="Only this x-error-type (repeatable).")
@click.option(
    "--older-than", callback=_duration, help="Only letters dead-lettered at least this long ago (15m, 2h)."
)
@click.option("--newer-than", callback=_duration, help="Only letters dead-lettered at most this long ago.")
@click.option("--dry-run", is_flag=True, help="Only show what would be replayed.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="At most N messages per second.")
@click.option(
    "--max-refail-ratio",
    type=click.FloatRange(0.0, 1.0),
    help="Stop when more than this share dead-letters again [default: PLATFORM_REPLAY_MAX_REFAIL_RATIO].",
)
@json_option
@click.pass_context
def replay_command(
    ctx: click.Context,
    queue: str,
    ids: tuple[str, ...],
    groups: tuple[str, ...],
    tasks: tuple[str, ...],
    error_classes: tuple[str, ...],
    error_types: tuple[str, ...],
    older_than: timedelta | None,
    newer_than: timedelta | None,
    dry_run: bool,
    rate: float | None,
    max_refail_ratio: float | None,
    as_json: bool,
) -> None:
    """Move dead letters of QUEUE back to their original queue.

    A letter leaves the DLQ only after its copy is confirmed by the broker; the
    copy keeps its task id and gains x-replay-count. Letters that don't match
    stay in place, in order. Every replay is recorded in the run folder's
    dlq-audit.jsonl.
    """
    context = Context(ctx)
    name = context.queue(queue)
    selection = ops.Filter(ids, groups, tasks, error_classes, error_types, older_than, newer_than)
    ratio = context.settings.replay_max_refail_ratio if max_refail_ratio is None else max_refail_ratio
    bar: Any = None
    progress: Callable[[ops.ReplayProgress], None] | None = None
    if not as_json and not dry_run:

        def progress(state: ops.ReplayProgress) -> None:
            nonlocal bar
            if bar is None:
                bar = click.progressbar(
                    length=state.total, label=f"replaying {dead_letter_queue(name)}", file=sys.stderr
                )
                bar.__enter__()
            bar.update(state.scanned - bar.pos)

    with context.broker() as connection:
        try:
            result = ops.replay_and_audit(
                connection,
                name,
                selection,
                who=ops.operator(),
                run_dir=context.settings.run_dir,
                dry_run=dry_run,
                rate=rate,
                max_refail_ratio=ratio,
                confirm_timeout=context.settings.publish_timeout,
                progress=progress,
            )
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    _print_replay(result, as_json)
    if result.stopped == ops.STOP_REFAILURES:
        fail(
            f"replay stopped: {result.refailed} of {result.replayed} replayed messages were dead-lettered again "
            f"(limit {ratio:.0%}); fix the cause, then replay the rest",
            EXIT_REFAILURES,
        )
    if result.stopped == ops.STOP_PUBLISH_FAILED:
        fail(
            f"replay stopped: {result.error}; the unconfirmed letter is still in the DLQ", EXIT_PUBLISH_FAILED
        )


def _print_replay(result: ops.ReplayResult, as_json: bool) -> None:
    if as_json:
        emit_json({**result.__dict__, "rate": result.rate})
        return
    if result.dry_run:
        click.echo(
            f"dry run: {result.matched} of {result.scanned} dead letters in {dead_letter_queue(result.queue)} "
            "would be replayed"
        )
        for group, count in sorted(result.groups.items(), key=lambda item: -item[1]):
            click.echo(f"  group {group}: {count}")
        for task_id in result.task_ids[:20]:
            click.echo(f"  {task_id}")
        if len(result.task_ids) > 20:
            click.echo(f"  ... and {len(result.task_ids) - 20} more")
        return
    click.echo(
        f"replayed {result.replayed} of {result.matched} matching ({result.scanned} scanned) from "
        f"{dead_letter_queue(result.queue)} in {result.elapsed:.1f}s ({result.rate:.1f}/s); "
        f"{result.refailed} dead-lettered again so far"
    )


# ------------------------------------------------------------------ purge, export


@dlq.command()
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@json_option
@click.pass_context
def purge(ctx: click.Context, queue: str, yes: bool, as_json: bool) -> None:
    """Delete every dead letter of QUEUE (asks first)."""
    context = Context(ctx)
    name = context.queue(queue)
    with context.broker() as connection:
        count = ops.dlq_depth(connection, name)
        if not yes and not click.confirm(
            f"delete all {count} dead letters of {dead_letter_queue(name)}? this can't be undone"
        ):
            click.echo("aborted; nothing was deleted", err=True)
            sys.exit(EXIT_ABORTED)
        deleted = ops.purge_and_audit(connection, name, who=ops.operator(), run_dir=context.settings.run_dir)
    if as_json:
        emit_json({"queue": name, "dead_letter_queue": dead_letter_queue(name), "deleted": deleted})
    else:
        click.echo(f"purged {deleted} dead letters from {dead_letter_queue(name)}")


@dlq.command()
@click.argument("queue")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File to write (stdout by default).")
@click.option("--limit", type=click.IntRange(min=1), help="Export at most N.")
@click.pass_context
def export(ctx: click.Context, queue: str, output: Any, limit: int | None) -> None:
    """Write QUEUE's dead letters as JSON lines (body base64 where not UTF-8); nothing is consumed."""
    context = Context(ctx)
    name = context.queue(queue)
    count = 0
    with context.broker() as connection:
        for line in ops.export_lines(ops.iter_dead_letters(connection, name, limit)):
            output.write(line + "\n")
            count += 1
    click.echo(f"exported {count} dead letters from {dead_letter_queue(name)}", err=True)
