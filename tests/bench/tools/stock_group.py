"""Stock Celery in the platform's default layout: ``python -m tests.bench.tools.stock_group QUEUE [N]``.

N (default 2) ``celery -A tests.bench.apps.stock worker -P solo`` processes
on QUEUE, run and stopped like the platform's worker group
(:class:`workers.ops.worker_group.WorkerGroup`): so the drain case can show
what Celery's own per-message machinery costs in the same layout, without
the platform's lifecycle. ``BENCH_STOCK_MODE`` picks the stock configuration.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from tests.bench.processes import CONCURRENCY
from tests.bench.systems import STOCK_APP
from workers.ops.worker_group import WorkerGroup


def command(queue: str, index: int) -> list[str]:
    """Solo worker ``index`` of ``queue``, flags as the other stock sides run theirs."""
    return [
        sys.executable, "-m", "celery", "-A", STOCK_APP, "worker", "-Q", queue, "-P", "solo",
        "-n", f"stock-solo-{index}@%h", "-l", "warning", "--without-mingle", "--without-gossip",
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    queue = argv[0]
    count = int(argv[1]) if len(argv) > 1 else CONCURRENCY
    group = WorkerGroup([command(queue, index) for index in range(1, count + 1)])

    def on_signal(signum: int, frame: FrameType | None) -> None:
        group.stop(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return group.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
