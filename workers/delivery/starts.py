"""Which deliveries a worker actually took: so a message that only waited in a prefetch window
is not counted as poison.

RabbitMQ's delivery count grows each time a message goes back to its queue
unacknowledged, whether a worker was running it or it only waited in the
prefetch window of a worker that died for another message's sake. The poison
check (:mod:`workers.delivery.consumer`) counts the deliveries a worker took,
not the returns: when a worker's prefetch window is above one message per task
slot, each delivery it takes is appended to this process's take file, before
it runs, and a message is poison once its recorded takes reach the delivery
limit. A worker takes a message when it is about to run it: a solo worker
reads the next message only once the previous one finished, so the message
behind a running one stays unread in the socket and is never recorded.

A take is one ``write`` of the task id to a file opened for appending (no
lock, no transaction: a state-store write per task here cost the solo layout
most of its gain), kept in the page cache when the process is killed. The
files live in ``<run folder>/takes/``, one per process, started afresh past
:data:`SEGMENT_BYTES` (the previous segment is kept, older ones deleted). They
are read only when a message reaches the limit. So takes are known per host:
a message that died on another host counts as RabbitMQ counts it, up to
RabbitMQ's own limit (``x-delivery-limit``, one above the platform's), which
dead-letters a message returned more often, taken or not (reason
``delivery_limit`` in its ``x-death``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: Bytes a take file grows to before the process starts a new one (about 100,000 takes).
SEGMENT_BYTES = 4_000_000
#: Seconds after which a take file nobody writes to any more is deleted (a redelivery comes much sooner).
STALE_AFTER = 86_400.0


def takes_folder(state_url: str, run_dir: str) -> Path:
    """Where a host's take files live: beside a SQLite state store, else in the run folder."""
    if state_url.startswith("sqlite:///") and state_url != "sqlite:///:memory:":
        return Path(state_url.removeprefix("sqlite:///")).parent / "takes"
    return Path(run_dir) / "takes"


class TakeLedger:
    """Deliveries taken per task id on this host, in append-only files under ``folder``.

    Args:
        folder: where the take files of every worker process on this host live.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._fd: int | None = None
        self._pid = 0
        self._segment = 0
        self._written = 0

    def _path(self, segment: int) -> Path:
        return self.folder / f"takes-{os.getpid()}-{segment}.log"

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self.folder.mkdir(parents=True, exist_ok=True)
            if self._pid == 0:
                self._forget_stale()
            self._pid = os.getpid()
            self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def take(self, task_id: str) -> None:
        """Record that this process took a delivery of ``task_id`` and is about to run it."""
        line = f"{task_id}\n".encode()
        os.write(self._open(), line)
        self._written += len(line)
        if self._written >= SEGMENT_BYTES:
            self._rotate()

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._written = 0
        old = self._path(self._segment - 1)
        self._segment += 1
        try:
            old.unlink()
        except FileNotFoundError:
            pass

    def _forget_stale(self) -> None:
        cutoff = time.time() - STALE_AFTER
        for path in self.folder.glob("takes-*.log"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass

    def taken(self, task_id: str) -> int:
        """How many deliveries of ``task_id`` a worker on this host took (0 if none was recorded)."""
        wanted = f"{task_id}\n".encode()
        count = 0
        for path in self.folder.glob("takes-*.log"):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            count += sum(1 for line in data.splitlines(keepends=True) if line == wanted)
        return count


def deliveries_taken(returns: int, recorded: int) -> int:
    """Earlier deliveries of a message that workers took and that ended without an ack (pure).

    Args:
        returns: RabbitMQ's delivery count (earlier deliveries that went back unacknowledged).
        recorded: deliveries recorded as taken before this one (:meth:`TakeLedger.taken`).

    Returns:
        ``recorded``, at most ``returns`` (a take recorded just before an ack
        that the broker still saw is not a return).
    """
    return max(min(returns, recorded), 0)
