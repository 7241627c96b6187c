"""What every ``celery -A config <group>`` command shares: the app, errors, exit codes, JSON.

Exit codes common to every group (a group adds its own from 4 up):

====  ===========================================================
0     success
1     aborted at a confirmation prompt
2     bad usage (click's own code for a bad option or argument)
3     broker unreachable (down, refused the login, or its TLS certificate was not accepted)
====  ===========================================================

Every failure prints one line ``error: ...`` to stderr, never a traceback,
and never a password (URLs are masked).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click
from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError

from workers.broker import describe_connect_error, masked_url, reading_connection
from workers.ops.text import json_safe

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Connection

EXIT_ABORTED = 1
EXIT_USAGE = 2
EXIT_BROKER_UNREACHABLE = 3

#: ``--json`` for every command that prints something a script may read.
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def app_of(ctx: click.Context) -> Celery:
    """The Celery app of ``celery -A ...`` that runs this command."""
    return ctx.find_root().obj.app


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON (datetimes and bytes made JSON-safe)."""
    click.echo(json.dumps(json_safe(value), indent=2, sort_keys=True))


@contextmanager
def broker_connection(app: Celery) -> Iterator[Connection]:
    """A connection to ``app``'s broker; an unreachable broker exits 3 with one line."""
    url = masked_url(app.conf.broker_url)
    try:
        with reading_connection(app) as connection:
            connection.ensure_connection(max_retries=1)
            yield connection
    except (OperationalError, OSError, AMQPError) as exc:
        fail(f"broker unreachable at {url}: {describe_connect_error(exc)}", EXIT_BROKER_UNREACHABLE)
