"""The worker layout: how the processes that consume one queue are started (pure, no I/O).

The one place that says what command line runs a queue's worker under the
chosen layout (``PLATFORM_WORKER_LAYOUT``). ``make up`` (through
:mod:`workers.ops.worker_group`) and any actuator that starts workers per
queue call :func:`worker_command`; nothing else spells the command.

- ``solo`` (default): ``PLATFORM_CONCURRENCY`` separate worker processes per
  queue, each running Celery's solo pool: the process that receives a message
  runs it, with no pipe to a pool child. Each is a worker of its own in Flower
  (``<queue>-<n>@<host>``). Time limits come from
  :mod:`workers.delivery.bootsteps.solo_limits` (soft: an alarm signal; hard:
  the process exits and the broker redelivers), and the same step keeps the
  broker heartbeats going while a task runs.
- ``prefork``: one main process with ``PLATFORM_CONCURRENCY`` children
  (Celery's pool), as before: pool-enforced time limits, a pipe hop per task.
- ``threads``: one process with ``PLATFORM_CONCURRENCY`` threads. No time
  limits: tasks that declare one are refused (:mod:`workers.delivery.options`).
"""

from __future__ import annotations

import sys

from config.settings import Settings

#: The layouts, fastest first.
LAYOUTS = ("solo", "prefork", "threads")
#: Celery pool of each layout.
POOLS = {"solo": "solo", "prefork": "prefork", "threads": "threads"}
#: Messages per task slot each layout holds when ``PLATFORM_WORKER_PREFETCH`` is 0. A solo
#: process holds the message it runs and the next one (read only when the first is done), so
#: no message waits behind more than one task; the others keep the one-per-slot they always had.
DEFAULT_PREFETCH = {"solo": 2, "prefork": 1, "threads": 1}


def prefetch_window(settings: Settings) -> int:
    """Messages each task slot may hold unacknowledged under ``settings``' layout.

    Args:
        settings: the platform settings (``worker_prefetch``, ``worker_layout``).
    """
    return settings.worker_prefetch or DEFAULT_PREFETCH.get(settings.worker_layout, 1)


def worker_processes(settings: Settings) -> int:
    """How many worker processes one queue gets under ``settings``' layout.

    Args:
        settings: the platform settings (``worker_layout``, ``concurrency``).

    Returns:
        ``concurrency`` for ``solo``; 1 otherwise (the slots are in one process).
    """
    return settings.concurrency if settings.worker_layout == "solo" else 1


def node_name(queue: str, settings: Settings, index: int = 1) -> str:
    """The Celery node name of the ``index``-th worker process of ``queue`` (``%h``: the host).

    Args:
        queue: the queue the worker consumes.
        settings: the platform settings.
        index: which of :func:`worker_processes` (from 1).
    """
    if settings.worker_layout == "solo":
        return f"{queue}-{index}@%h"
    return f"{queue}@%h"


def worker_command(
    queue: str,
    settings: Settings,
    index: int = 1,
    loglevel: str = "info",
    python: str | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The command line of the ``index``-th worker process of ``queue`` under the chosen layout.

    Args:
        queue: the queue (a work queue, the default queue or a subscriber queue).
        settings: the platform settings (layout, concurrency, prefetch window).
        index: which of the queue's :func:`worker_processes` (from 1).
        loglevel: Celery's ``-l``.
        python: the interpreter (default: this one).
        extra: more ``celery worker`` options, appended.

    Returns:
        ``python -m celery -A config worker ...`` as a list of arguments.

    Raises:
        ValueError: an unknown layout or an index out of range.
    """
    layout = settings.worker_layout
    if layout not in POOLS:
        raise ValueError(f"unknown worker layout {layout!r} (one of {', '.join(LAYOUTS)})")
    if not 1 <= index <= worker_processes(settings):
        raise ValueError(f"queue {queue} has {worker_processes(settings)} worker processes, not {index}")
    return [
        python or sys.executable, "-m", "celery", "-A", "config", "worker",
        "-Q", queue, *pool_options(settings),
        "-n", node_name(queue, settings, index), "-l", loglevel, *extra,
    ]  # fmt: skip


def pool_options(settings: Settings) -> list[str]:
    """The ``celery worker`` options of one process under ``settings``' layout: pool, slots, window.

    Also what the autoscaler's local pool gives each process it starts (there a
    queue's processes are as many as the engine decides, each named ``<queue>-<n>``).

    Raises:
        ValueError: an unknown layout.
    """
    layout = settings.worker_layout
    if layout not in POOLS:
        raise ValueError(f"unknown worker layout {layout!r} (one of {', '.join(LAYOUTS)})")
    slots = 1 if layout == "solo" else settings.concurrency
    return ["-P", POOLS[layout], "-c", str(slots), "--prefetch-multiplier", str(prefetch_window(settings))]
