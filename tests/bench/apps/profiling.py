"""Profile a platform worker when the suite asks (a target was missed).

``BENCH_PROFILE_DIR`` set: pyinstrument samples the main process (consumer,
acks, republishing) from ``worker_ready`` to ``worker_shutdown``, and each
prefork pool process (the task body, the idempotency store) from
``worker_process_init`` to ``worker_process_shutdown``. Each writes
``profile-<role>-<pid>.txt`` (call tree), ``.self.txt`` and ``.total.txt``
(flat time per function, library frames included), ``.html`` and the
``.pyisession`` (``pyinstrument --load``) into the folder.

``BENCH_TRACEMALLOC`` also set: each process traces its allocations too and
writes the biggest growth by allocating line to ``memory-<role>-<pid>.txt``.

The suite's own tool processes (publishers, the DLQ mover, the fan-out
publisher) profile their measured work with :func:`profiled`, into the same
files under their own role.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Environment variable naming the folder for profiles; unset means no profiling.
PROFILE_DIR_VARIABLE = "BENCH_PROFILE_DIR"
#: Environment variable that turns allocation tracing on as well.
TRACEMALLOC_VARIABLE = "BENCH_TRACEMALLOC"
#: Sampling interval, in seconds.
INTERVAL = 0.001
#: Allocation sites listed in a memory report.
TOP_ALLOCATIONS = 25

_active: dict[str, Any] = {}


def _start(role: str) -> None:
    from pyinstrument import Profiler

    if any(not name.endswith("-memory") for name in _active):
        return  # a solo worker is main and pool in one process: one profiler covers both

    if os.environ.get(TRACEMALLOC_VARIABLE):
        tracemalloc.start(1)
        _active[f"{role}-memory"] = tracemalloc.take_snapshot()
    profiler = Profiler(interval=INTERVAL, async_mode="disabled")
    profiler.start()
    _active[role] = profiler


def _stop(role: str) -> None:
    profiler = _active.pop(role, None)
    folder = os.environ.get(PROFILE_DIR_VARIABLE)
    if profiler is None or not folder:
        return
    profiler.stop()
    stem = f"{role}-{os.getpid()}"
    Path(folder, f"profile-{stem}.txt").write_text(profiler.output_text(unicode=True, color=False))
    write_flat(profiler, Path(folder), stem)
    Path(folder, f"profile-{stem}.html").write_text(profiler.output_html())
    before = _active.pop(f"{role}-memory", None)
    if before is not None:
        growth = tracemalloc.take_snapshot().compare_to(before, "lineno")
        lines = [f"allocation growth in the {role} process {os.getpid()} (top {TOP_ALLOCATIONS})"]
        lines += [str(stat) for stat in growth[:TOP_ALLOCATIONS]]
        Path(folder, f"memory-{stem}.txt").write_text("\n".join(lines) + "\n")


def _stop_all() -> None:
    """Write every profile this process still runs (a solo worker's ``pool`` one ends here too)."""
    for role in [name for name in _active if not name.endswith("-memory")]:
        _stop(role)


def write_flat(profiler: Any, folder: Path, stem: str) -> None:
    """Flat views, library frames included: self time and total (inclusive) time per function."""
    for mode in ("self", "total"):
        text = profiler.output_text(unicode=True, color=False, flat=True, flat_time=mode, show_all=True)
        Path(folder, f"profile-{stem}.{mode}.txt").write_text(text)
    profiler.last_session.save(str(Path(folder, f"profile-{stem}.pyisession")))


@contextmanager
def profiled(role: str) -> Iterator[None]:
    """Profile the block as ``role`` when ``BENCH_PROFILE_DIR`` is set; otherwise just run it."""
    if not os.environ.get(PROFILE_DIR_VARIABLE):
        yield
        return
    _start(role)
    try:
        yield
    finally:
        _stop(role)


def install_if_asked() -> None:
    """Connect the profiling signal handlers if ``BENCH_PROFILE_DIR`` is set."""
    if not os.environ.get(PROFILE_DIR_VARIABLE):
        return
    from celery import signals

    signals.worker_ready.connect(lambda **_: _start("main"), weak=False)
    signals.worker_shutdown.connect(lambda **_: _stop_all(), weak=False)
    signals.worker_process_init.connect(lambda **_: _start("pool"), weak=False)
    signals.worker_process_shutdown.connect(lambda **_: _stop("pool"), weak=False)
