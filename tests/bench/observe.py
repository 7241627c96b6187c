"""Read what benchmark tasks recorded (see :mod:`tests.bench.apps.marks`) with deadlines."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

#: Seconds between polls of a mark file.
POLL = 0.002


def count(path: Path) -> int:
    """Marks in a counter file (one byte each)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait_for_count(
    path: Path, expected: int, timeout: float, alive: Callable[[], bool] | None = None
) -> float:
    """Wait until ``path`` holds ``expected`` marks; returns when (``perf_counter``).

    Raises:
        TimeoutError: the deadline passed or the worker died first; says how far it got.
    """
    deadline = time.perf_counter() + timeout
    while True:
        now = time.perf_counter()
        if count(path) >= expected:
            return now
        if now > deadline or (alive is not None and not alive()):
            state = "timed out" if now > deadline else "worker exited"
            raise TimeoutError(f"{state} with {count(path)} of {expected} tasks done")
        time.sleep(POLL)


def stamp_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def latencies_ms(path: Path) -> list[float]:
    """Enqueue-to-start latencies in milliseconds, sorted; warm-up stamps (sent < 0) left out."""
    found = []
    for line in path.read_text().splitlines():
        sent, _, started = line.partition(" ")
        if float(sent) >= 0:
            found.append((float(started) - float(sent)) * 1000.0)
    return sorted(found)
