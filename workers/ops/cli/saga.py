"""Command line: ``celery -A config saga list|show|retry|resolve`` (a Celery sub-command).

Registered through Celery's ``celery.commands`` entry point. ``list`` and
``show`` take ``--json`` for scripts. The work lives in :mod:`workers.ops.sagas`;
this module parses, prints and maps errors to exit codes (1 to 3 are every
group's, :mod:`workers.ops.cli.common`):

====  ===========================================================
0     success
1     aborted at the confirmation prompt
2     bad usage: unknown option, bad ``--older-than``, empty note
3     broker unreachable (``retry``; ``show`` prints the timeline and says so)
4     unknown saga id
5     the saga is not in a state the command applies to (``retry``: only
      ``compensation_failed`` with a dead letter; ``resolve``: not confirmed,
      cancelled or resolved)
6     the state store can't be read (bad ``PLATFORM_STATE_URL``, database down)
====  ===========================================================

Every failure prints one line ``error: ...`` to stderr, never a traceback and
never a password (URLs are masked).
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError

from config.app import platform_config
from workers.broker import masked_text
from workers.delivery.idempotency import CompletionStore, open_store
from workers.ops import dlq as dlq_ops
from workers.ops import sagas as ops
from workers.ops.cli.common import EXIT_ABORTED, app_of, broker_connection, emit_json, fail, json_option
from workers.ops.text import age_text
from workers.sagas.definition import COMPENSATION_FAILED

EXIT_UNKNOWN_SAGA = 4
EXIT_WRONG_STATE = 5
EXIT_STATE_STORE = 6


def _store_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, ValueError)
    try:
        import psycopg  # optional: the 'postgres' extra
    except ImportError:
        return errors
    return (*errors, psycopg.Error)


#: What a state store that can't be opened or read raises (a bad URL is a ValueError).
STORE_ERRORS = _store_errors()


@click.group(name="saga")
def saga() -> None:
    """List and show sagas, retry a failed compensation, resolve a saga by hand."""


@contextmanager
def state_store(ctx: click.Context) -> Iterator[CompletionStore]:
    """The state store; a store that can't be opened or read exits 6 (URL masked), an unknown saga 4."""
    url = platform_config(app_of(ctx)).settings.state_url
    try:
        yield open_store(url)
    except ops.SagaNotFound as exc:
        fail(str(exc), EXIT_UNKNOWN_SAGA)
    except ops.WrongState as exc:
        fail(str(exc), EXIT_WRONG_STATE)
    except STORE_ERRORS as exc:
        reason = " ".join(masked_text(str(exc)).split())
        fail(f"state store {masked_text(url)} can't be read: {reason}", EXIT_STATE_STORE)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return dlq_ops.parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@saga.command(name="list")
@click.option("--state", "states", multiple=True, help="Only sagas in this state (repeatable).")
@click.option("--older-than", callback=_duration, help="Only sagas started at least this long ago (15m, 2h).")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True, help="List at most N.")
@json_option
@click.pass_context
def list_(
    ctx: click.Context, states: tuple[str, ...], older_than: timedelta | None, limit: int, as_json: bool
) -> None:
    """Sagas, oldest first: id, type, state, age, last change."""
    now = time.time()
    before = now - older_than.total_seconds() if older_than is not None else None
    with state_store(ctx) as store:
        found = ops.list_sagas(store, states, before, limit)
    if as_json:
        emit_json([_saga_record(s, now) for s in found])
        return
    if not found:
        click.echo("no sagas" + (" match" if states or older_than else ""))
        return
    click.echo(f"{'saga id':36}  {'type':8}  {'state':20}  {'age':>8}  {'changed':>8}")
    for s in found:
        click.echo(
            f"{s.saga_id:36}  {s.saga_type:8}  {s.state:20}  {age_text(now - s.started_at):>8}  "
            f"{age_text(now - s.updated_at) + ' ago':>8}"
        )


def _saga_record(s: Any, now: float) -> dict[str, Any]:
    return {
        "saga_id": s.saga_id,
        "type": s.saga_type,
        "state": s.state,
        "started_at": _when(s.started_at),
        "updated_at": _when(s.updated_at),
        "age_seconds": round(now - s.started_at, 3),
        "data": s.data,
    }


@saga.command()
@click.argument("saga_id")
@json_option
@click.pass_context
def show(ctx: click.Context, saga_id: str, as_json: bool) -> None:
    """A saga's timeline (each transition, its event id, service and time) and its dead letters."""
    app = app_of(ctx)
    with state_store(ctx) as store:
        view = ops.load_view(store, saga_id)
    try:
        with broker_connection_quiet(app) as connection:
            view.letters = ops.saga_letters(connection, platform_config(app).topology.names, saga_id)
    except BrokerDown as exc:
        view.letters_error = str(exc)
    if as_json:
        emit_json(
            {
                **_saga_record(view.saga, time.time()),
                "log": [
                    {
                        "seq": e.seq,
                        "kind": e.kind,
                        "from": e.from_state,
                        "to": e.to_state,
                        "event_id": e.event_id,
                        "event_type": e.event_type,
                        "service": e.service,
                        "at": _when(e.at),
                        "note": e.note,
                    }
                    for e in view.log
                ],  # fmt: skip
                "dead_letters": [_letter_record(item) for item in view.letters],
                "dead_letters_error": view.letters_error or None,
            }
        )
        return
    s = view.saga
    click.echo(f"saga {s.saga_id} ({s.saga_type}): {s.state}, started {_when(s.started_at)}, data {s.data}")
    for e in view.log:
        step = f"{e.from_state or '-'} -> {e.to_state}" if e.kind == "move" else f"{e.kind} in {e.to_state}"
        note = f"  ({e.note})" if e.note else ""
        click.echo(
            f"  {e.seq:>3}  {_when(e.at)}  {step:38}  {e.event_type:20} {e.service:10} {e.event_id}{note}"
        )
    if view.letters_error:
        click.echo(f"dead letters: not looked up ({view.letters_error})")
    elif view.letters:
        click.echo("dead letters:")
        for item in view.letters:
            record = _letter_record(item)
            click.echo(
                f"  {record['dead_letter_queue']}  {record['task_id']}  {record['error_type']}: {record['error_message']}"
            )
    else:
        click.echo("dead letters: none")


def _letter_record(item: ops.SagaLetter) -> dict[str, Any]:
    letter = item.letter
    return {
        "dead_letter_queue": f"{item.queue}.dlq",
        "task_id": letter.task_id,
        "task": letter.task_name,
        "error_class": letter.error_class,
        "error_type": letter.error_type,
        "error_message": letter.error_message,
    }


class BrokerDown(Exception):
    """The broker could not be reached (its URL masked in the message)."""


@contextmanager
def broker_connection_quiet(app: Any) -> Iterator[Any]:
    """Like :func:`broker_connection`, raising :class:`BrokerDown` instead of exiting."""
    from workers.broker import masked_url, reading_connection

    try:
        with reading_connection(app) as connection:
            connection.ensure_connection(max_retries=1)
            yield connection
    except (OperationalError, OSError, AMQPError) as exc:
        raise BrokerDown(f"broker unreachable at {masked_url(app.conf.broker_url)}: {exc}") from None


@saga.command()
@click.argument("saga_id")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@click.pass_context
def retry(ctx: click.Context, saga_id: str, yes: bool) -> None:
    """Send a compensation_failed saga back and replay its dead letters (asks first)."""
    app = app_of(ctx)
    settings = platform_config(app).settings
    with state_store(ctx) as store:
        view = ops.load_view(store, saga_id)
        if view.saga.state != COMPENSATION_FAILED:  # said before the broker is needed
            fail(
                f"saga {saga_id} is {view.saga.state}; only a compensation_failed saga is retried",
                EXIT_WRONG_STATE,
            )
        if not yes and not click.confirm(
            f"retry the failed compensation of saga {saga_id} ({view.saga.state})?"
        ):
            click.echo("aborted; nothing was changed", err=True)
            sys.exit(EXIT_ABORTED)
        with broker_connection(app) as connection:
            moved, replayed = ops.retry_saga(
                store, connection, platform_config(app).topology.names, saga_id,
                who=dlq_ops.operator(), run_dir=settings.run_dir,
            )  # fmt: skip
    click.echo(f"saga {saga_id}: back to {moved.state}; replayed {replayed} dead letters")


@saga.command()
@click.argument("saga_id")
@click.option("--note", required=True, help="What was settled by hand (kept in the saga's log).")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@click.pass_context
def resolve(ctx: click.Context, saga_id: str, note: str, yes: bool) -> None:
    """Close a saga that did not end well as resolved, with a note (asks first)."""
    if not note.strip():
        raise click.BadParameter("the note must say what was settled", param_hint="--note")
    with state_store(ctx) as store:
        view = ops.load_view(store, saga_id)
        if not yes and not click.confirm(f"mark saga {saga_id} ({view.saga.state}) resolved?"):
            click.echo("aborted; nothing was changed", err=True)
            sys.exit(EXIT_ABORTED)
        moved = ops.resolve_saga(store, saga_id, who=dlq_ops.operator(), note=note.strip())
    click.echo(f"saga {saga_id}: {moved.state}")
