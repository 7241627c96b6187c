"""Ledger tasks for the receipt fuzz test (tests/integration/test_receipt_fuzz.py).

Each generated message carries a marker (``fz-<number>``) that the test finds
again: a task that runs writes ``fuzz-processed <marker> <time> <task id>`` to
the ledger (``PLATFORM_TEST_LEDGER``, see tests/support/tasks.py). The marker
is the first positional argument when the body is a well-formed call; when a
case breaks the body, the task falls back to the ``x-fuzz-marker`` header
(Celery copies message headers into the request). A task run that finds no
marker at all records ``fuzz-processed ? ...``, so it still shows up.

Every task accepts any arguments: a body with odd but callable inner types
runs instead of failing on the signature, so what the ledger sees is what the
platform did with the delivery, not what Python thought of the call.
"""

from __future__ import annotations

from typing import Any

from config import app
from tests.support.tasks import record
from workers.errors import PermanentError, TransientError

#: Prefix of every marker (what the test searches bodies for).
MARKER_PREFIX = "fz-"
#: The header a case puts its marker in when the body can't carry it.
MARKER_HEADER = "x-fuzz-marker"
#: Ledger event of a run that completed.
PROCESSED = "fuzz-processed"
#: Ledger event of an attempt (every run, failing or not).
ATTEMPT = "fuzz-attempt"

#: Fast retries: a failing fuzz message settles within a second or so.
FAST_RETRIES = {"retry_base": 0.05, "retry_jitter_max": 0.05, "retry_max_delay": 0.2}


def marker_of(request: Any, args: tuple[Any, ...], kwargs: Any) -> str:
    """The marker of the message being run: its first argument, else its header, else ``?``."""
    if args and isinstance(args[0], str) and args[0].startswith(MARKER_PREFIX):
        return args[0]
    if isinstance(kwargs, dict) and isinstance(kwargs.get("marker"), str):
        return kwargs["marker"]
    found = getattr(request, MARKER_HEADER, None) or (getattr(request, "headers", None) or {}).get(
        MARKER_HEADER
    )
    return found if isinstance(found, str) else "?"


def _note(self: Any, event: str, args: tuple[Any, ...], kwargs: Any) -> str:
    marker = marker_of(self.request, args, kwargs)
    record(event, marker, f"{self.request.id!r} retries={self.request.retries!r}")
    return marker


@app.task(bind=True, name="tests.fuzz.record", **FAST_RETRIES, shared=False)
def record_marker(self, *args: Any, **kwargs: Any) -> None:
    """Succeeds, recording the marker (idempotent: a redelivered id is not run again)."""
    _note(self, ATTEMPT, args, kwargs)
    _note(self, PROCESSED, args, kwargs)


@app.task(bind=True, name="tests.fuzz.record_always", idempotent=False, **FAST_RETRIES, shared=False)
def record_marker_always(self, *args: Any, **kwargs: Any) -> None:
    """Like ``tests.fuzz.record`` without idempotency: for messages whose id is not unique."""
    _note(self, ATTEMPT, args, kwargs)
    _note(self, PROCESSED, args, kwargs)


@app.task(bind=True, name="tests.fuzz.refuse", **FAST_RETRIES, shared=False)
def refuse(self, *args: Any, **kwargs: Any) -> None:
    """Fails permanently: the message belongs in the DLQ at once."""
    marker = _note(self, ATTEMPT, args, kwargs)
    raise PermanentError(f"fuzz message {marker} is refused")


@app.task(bind=True, name="tests.fuzz.flaky", **FAST_RETRIES, shared=False)
def flaky(self, *args: Any, **kwargs: Any) -> None:
    """Times out on its first attempt, then succeeds (one trip through a delay queue)."""
    marker = _note(self, ATTEMPT, args, kwargs)
    if not self.request.retries:
        raise TransientError(f"fuzz message {marker}: first attempt times out")
    _note(self, PROCESSED, args, kwargs)


@app.task(bind=True, name="tests.fuzz.crash", **FAST_RETRIES, shared=False)
def crash(self, *args: Any, **kwargs: Any) -> None:
    """Fails with an unclassified error every time: retried twice, then dead-lettered."""
    marker = _note(self, ATTEMPT, args, kwargs)
    raise RuntimeError(f"fuzz message {marker} hit a bug")
