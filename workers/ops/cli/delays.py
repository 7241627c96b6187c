"""Command line: ``celery -A config delays ...`` (a Celery sub-command).

Registered through Celery's ``celery.commands`` entry point. ``stats`` and
``peek`` read the delay levels without consuming anything; ``cancel`` moves a
task's delayed message to its queue's DLQ (``x-error-class: cancelled``, so
``dlq replay`` can run it after all), audited in the run folder's
dlq-audit.jsonl. The work lives in :mod:`workers.ops.delays`; this module only
parses, prints and maps errors to exit codes (1 to 3 are every group's,
:mod:`workers.ops.cli.common`):

====  ===========================================================
0     success
1     aborted at the confirmation prompt
2     bad usage: unknown option, bad value
3     broker unreachable (nothing was changed that is not confirmed)
4     no delayed message with that task id
5     cancel stopped: the broker refused or did not confirm the move
      (the delayed message is still waiting), or its DLQ does not exist
====  ===========================================================

Every failure prints one line ``error: ...`` to stderr, never a traceback and
never the broker's password.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from config.app import platform_config
from config.topology import DELAY_LEVELS, DELAYED_UNROUTABLE, delay_level
from workers.ops import delays as ops
from workers.ops.cli.common import EXIT_ABORTED, app_of, broker_connection, emit_json, fail, json_option
from workers.ops.dlq import operator
from workers.ops.text import age_text

EXIT_NO_SUCH_TASK = 4
EXIT_CANCEL_FAILED = 5

#: The level queues, as messages name them.
LEVEL_RANGE = f"{delay_level(0)}..{DELAY_LEVELS - 1}"


@click.group(name="delays")
def delays() -> None:
    """Inspect and cancel delayed tasks (countdown / eta) waiting in the broker's delay levels."""


def due_text(due: datetime | None, now: datetime) -> str:
    """``2026-05-01T12:00:59.120+00:00 (in 59s)``, ``... (late 2s)``, or ``-``."""
    if due is None:
        return "-"
    seconds = (due - now).total_seconds()
    when = "in " + age_text(seconds) if seconds >= 0 else "late " + age_text(-seconds)
    return f"{due.isoformat(timespec='milliseconds')} ({when})"


def wait_text(milliseconds: int) -> str:
    """How long a level waits: ``10ms``, ``1.3s``, ``2m44s``, ``15d12h``."""
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    if milliseconds < 10_000:
        return f"{milliseconds / 1000:.2g}s"
    return age_text(milliseconds / 1000)


# --------------------------------------------------------------------------- stats


@delays.command()
@json_option
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Delayed messages per level, the next due time, and the unroutable catch-all's depth."""
    app = app_of(ctx)
    with broker_connection(app) as connection:
        result = ops.delay_stats(connection)
    now = datetime.now(UTC)
    if as_json:
        emit_json(result.record(now))
        return
    unroutable = "missing" if result.unroutable is None else result.unroutable
    click.echo(
        f"{result.messages} delayed messages in {LEVEL_RANGE}; next due {due_text(result.next_due_at, now)}"
    )
    click.echo(f"{DELAYED_UNROUTABLE} (due, but their queue is gone): {unroutable}")
    if result.missing:
        click.echo(f"missing: {len(result.missing)} level queues (run: celery -A config topology declare)")
    shown = [level for level in result.levels if level.messages]
    if not shown:
        return
    click.echo("")
    click.echo(f"{'level':>5}  {'queue':18} {'waits':>7} {'messages':>9}  next due")
    for level in shown:
        note = f"  (first {level.browsed} browsed)" if level.truncated else ""
        click.echo(
            f"{level.level:>5}  {level.queue:18} {wait_text(level.wait_ms):>7} {level.messages:>9}  "
            f"{due_text(level.next_due_at, now)}{note}"
        )


# ---------------------------------------------------------------------------- peek


@delays.command()
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show at most N.")
@click.option("--task-id", help="Only this task id.")
@click.option("--queue", help="Only tasks going to this work queue.")
@json_option
@click.pass_context
def peek(ctx: click.Context, limit: int, task_id: str | None, queue: str | None, as_json: bool) -> None:
    """The delayed tasks, soonest due first; nothing is consumed."""
    app = app_of(ctx)
    with broker_connection(app) as connection:
        tasks = ops.peek(connection, limit, task_id=task_id, queue=queue)
    now = datetime.now(UTC)
    if as_json:
        emit_json([task.record(now) for task in tasks])
        return
    click.echo(f"{LEVEL_RANGE}: showing {len(tasks)} delayed tasks (at most {limit}), soonest due first")
    if not tasks:
        return
    click.echo("")
    click.echo(f"{'due at':48} {'level':>5}  {'queue':14} {'task':24} id")
    for task in tasks:
        click.echo(
            f"{due_text(task.due_at, now):48} {task.level:>5}  {task.target_queue or '?':14} "
            f"{task.task_name or '?':24} {task.task_id or '?'}"
        )


# -------------------------------------------------------------------------- cancel


@delays.command()
@click.argument("task_id")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@json_option
@click.pass_context
def cancel(ctx: click.Context, task_id: str, yes: bool, as_json: bool) -> None:
    """Move TASK_ID's delayed message to its queue's DLQ (asks first).

    The dead letter keeps its body byte for byte and says who cancelled it
    (x-error-class cancelled), so `dlq replay QUEUE --id TASK_ID` runs it after
    all. Every cancel is recorded in the run folder's dlq-audit.jsonl.
    """
    app = app_of(ctx)
    settings = platform_config(app).settings
    with broker_connection(app) as connection:
        found = ops.peek(connection, None, task_id=task_id)
        if not found:
            fail(f"no delayed message with task id {task_id!r} in {LEVEL_RANGE}", EXIT_NO_SUCH_TASK)
        now = datetime.now(UTC)
        if not yes:
            for task in found:
                click.echo(
                    f"{task.task_id} {task.task_name or '?'} waits in {task.delay_queue} for "
                    f"{task.target_queue or '?'}, due {due_text(task.due_at, now)}",
                    err=True,
                )
            targets = ", ".join(sorted({f"{task.target_queue}.dlq" for task in found}))
            if not click.confirm(
                f"cancel it? it goes to {targets}, from where `dlq replay` can run it", err=True
            ):
                click.echo("aborted; nothing was cancelled", err=True)
                sys.exit(EXIT_ABORTED)
        try:
            result = ops.cancel(
                connection,
                task_id,
                who=operator(),
                run_dir=settings.run_dir,
                confirm_timeout=settings.publish_timeout,
            )
        except ops.CancelFailed as exc:
            fail(f"cancel stopped after {len(exc.result.cancelled)} moved: {exc}", EXIT_CANCEL_FAILED)
    now = datetime.now(UTC)
    if not result.cancelled:
        fail(
            f"no delayed message with task id {task_id!r} in {LEVEL_RANGE} any more (it may have become due)",
            EXIT_NO_SUCH_TASK,
        )
    if as_json:
        emit_json(result.record(now))
        return
    for item in result.cancelled:
        queue = item.task.target_queue
        click.echo(
            f"cancelled {item.task.task_id} ({item.task.task_name or '?'}): {item.task.delay_queue} -> "
            f"{item.dead_letter_queue} (was due {due_text(item.task.due_at, now)}); "
            f"run it after all with: celery -A config dlq replay {queue} --id {item.task.task_id}"
        )
