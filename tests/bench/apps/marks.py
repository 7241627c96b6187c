"""How benchmark tasks tell the suite what they did: append to files.

Every benchmark task, whichever framework runs it, calls one of these. Small
``O_APPEND`` writes are atomic, so several worker processes share a file:

- :func:`count`: one byte per completed task in ``BENCH_COUNTER`` (the suite
  reads the file size); :func:`count_failure` likewise in ``BENCH_FAILURES``;
- :func:`stamp`: one line ``<sent> <started>`` per task in ``BENCH_STAMPS``
  (enqueue-to-start latency).
"""

from __future__ import annotations

import os
import time

#: Environment variable naming the completion counter file.
COUNTER_VARIABLE = "BENCH_COUNTER"
#: Environment variable naming the failed-attempt counter file.
FAILURES_VARIABLE = "BENCH_FAILURES"
#: Environment variable naming the latency stamp file.
STAMPS_VARIABLE = "BENCH_STAMPS"

_fds: dict[tuple[int, str], int] = {}


def _fd(variable: str) -> int | None:
    path = os.environ.get(variable)
    if not path:
        return None
    key = (os.getpid(), path)
    fd = _fds.get(key)
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fds[key] = fd
    return fd


def count() -> None:
    """Record one completed task."""
    fd = _fd(COUNTER_VARIABLE)
    if fd is not None:
        os.write(fd, b".")


def count_failure() -> None:
    """Record one failed attempt (a retry storm task)."""
    fd = _fd(FAILURES_VARIABLE)
    if fd is not None:
        os.write(fd, b".")


def stamp(sent: float) -> None:
    """Record that a task sent at ``sent`` (unix time) started now."""
    started = time.time()
    fd = _fd(STAMPS_VARIABLE)
    if fd is not None:
        os.write(fd, f"{sent:.6f} {started:.6f}\n".encode())
