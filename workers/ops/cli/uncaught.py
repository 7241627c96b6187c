"""One line and an exit code for the errors Celery's own commands let through.

``celery -A config call``, ``celery -A config worker`` and the other commands
Celery itself defines let an exception they don't expect reach the
interpreter, which prints a traceback: a broker that is down, a queue that is
not one of the platform's, a countdown the delay levels can't hold. When the
platform's app is loaded by the ``celery`` command (never when a program
imports it), :func:`install` sets ``sys.excepthook`` so that these print one
line ``error: ...`` to stderr, URLs masked, and exit with the codes of the
platform's own command groups (:mod:`workers.ops.cli.common`):

====  ==========================================================================
2     bad usage: a countdown or eta the delay levels can't hold (``DelayError``)
3     broker unreachable (or it refused the login, or TLS failed)
4     unknown queue (Celery's ``QueueNotFound``, ``celery worker -Q`` naming one)
6     a publish was refused or not confirmed (``PublishError``)
====  ==========================================================================

Every other exception keeps Python's traceback: it is a bug, worth reading.

Alternatives rejected:

- a ``celery.commands`` entry point named ``call``: Celery adds its own
  commands after the plugins, so its ``call`` wins (as ``events`` did, hence
  ``pubsub``);
- a ``platform call`` command of our own: Celery users type ``celery call``,
  and ``celery worker -Q`` would still print tracebacks;
- wrapping the callbacks of Celery's click commands: that is patching Celery's
  objects, and breaks when Celery rewraps them (it does, for preload options).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from amqp.exceptions import AccessRefused, NotAllowed
from celery.exceptions import ImproperlyConfigured, QueueNotFound
from kombu.exceptions import OperationalError

from config.app import platform_config
from workers.broker import describe_connect_error, masked_text, masked_url
from workers.delivery.delays import DelayError
from workers.errors import PublishError
from workers.ops.cli.common import EXIT_BROKER_UNREACHABLE, EXIT_USAGE

if TYPE_CHECKING:
    from celery import Celery

EXIT_UNKNOWN_QUEUE = 4
EXIT_PUBLISH_FAILED = 6

#: Celery's messages that name a queue missing from ``task_queues``.
_MISSING_QUEUE = (
    re.compile(r"Queue '(?P<name>[^']*)' missing from task_queues"),
    re.compile(r"but queue '(?P<name>[^']*)' isn't\s+defined in the `task_queues` setting"),
)
#: Errors that mean the broker could not be reached (or refused us).
_UNREACHABLE = (OperationalError, ConnectionError, AccessRefused, NotAllowed)

Hook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or during, innermost last (no cycles)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _missing_queue(exc: BaseException) -> str | None:
    if not isinstance(exc, QueueNotFound | ImproperlyConfigured):
        return None
    text = str(exc)
    for pattern in _MISSING_QUEUE:
        found = pattern.search(text)
        if found:
            return found["name"]
    return None


def describe(exc: BaseException, app: Celery) -> tuple[str, int] | None:
    """The one line (without ``error: ``) and exit code for ``exc``, or None to keep the traceback."""
    queue = _missing_queue(exc)
    if queue is not None:
        names = ", ".join(platform_config(app).topology.names)
        return (
            f"unknown queue {queue!r}: the platform's queues are {names} "
            "(add a queue to PLATFORM_QUEUES, or a service to the subscriptions file)",
            EXIT_UNKNOWN_QUEUE,
        )
    if isinstance(exc, DelayError):
        return masked_text(str(exc)), EXIT_USAGE
    if not isinstance(exc, (PublishError, *_UNREACHABLE)):
        return None
    url = masked_url(app.conf.broker_url)
    unreachable = next((cause for cause in _causes(exc) if isinstance(cause, _UNREACHABLE)), None)
    if unreachable is not None:
        return f"broker unreachable at {url}: {describe_connect_error(unreachable)}", EXIT_BROKER_UNREACHABLE
    if isinstance(exc, PublishError):
        return f"publish failed: {masked_text(str(exc))}", EXIT_PUBLISH_FAILED
    return None


def install(app: Celery) -> None:
    """Report :func:`describe`'s errors in one line for the rest of this process (idempotent)."""
    previous: Hook = sys.excepthook
    if getattr(previous, "_platform_app", None) is not None:
        return

    def report(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        try:
            described = describe(exc, app)
        except Exception:  # noqa: BLE001 - reporting must never hide the original error
            described = None
        if described is None:
            previous(kind, exc, tb)
            return
        message, code = described
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        print(f"error: {message}", file=sys.stderr, flush=True)
        # The interpreter would exit 1 after any uncaught exception; the code is the point.
        os._exit(code)

    report._platform_app = app  # type: ignore[attr-defined]
    sys.excepthook = report
