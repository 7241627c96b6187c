"""Run one queue's worker processes under the chosen layout, and restart any that dies.

    python -m workers.ops.worker_group QUEUE [--loglevel info] [-- CELERY-WORKER-OPTIONS...]

Starts :func:`config.layout.worker_processes` processes, each with
:func:`config.layout.worker_command` (``make up`` runs one group per
queue). A process that exits while the group is not stopping (a solo worker
whose task hit its hard time limit exits on purpose, so the broker redelivers
its message) is started again after :data:`RESTART_DELAY` seconds. SIGTERM or
SIGINT is passed on to every process (Celery's warm shutdown) and the group
exits once they have.

Exit codes: 0 stopped by a signal; 1 a process kept dying at start
(:data:`CRASH_LIMIT` times within :data:`CRASH_WINDOW` seconds); 2 bad input
or settings (one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import time
from types import FrameType

from config.layout import worker_command, worker_processes

logger = logging.getLogger("workers.ops.worker_group")

#: Seconds before a process that exited is started again.
RESTART_DELAY = 1.0
#: Exits within :data:`CRASH_WINDOW` seconds of a start that make the group give up.
CRASH_LIMIT = 5
#: Seconds after its start within which an exit counts as a crash at start.
CRASH_WINDOW = 10.0
#: Seconds between two looks at the processes.
POLL_INTERVAL = 0.2
#: Exit codes.
OK, GAVE_UP, BAD_INPUT = 0, 1, 2


class WorkerGroup:
    """The worker processes of one queue.

    Args:
        commands: one command line per process.
    """

    def __init__(self, commands: list[list[str]]) -> None:
        self.commands = commands
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * len(commands)
        self.started_at = [0.0] * len(commands)
        self.crashes = 0
        self.stopping = False

    def start(self, index: int) -> None:
        self.processes[index] = subprocess.Popen(self.commands[index])
        self.started_at[index] = time.monotonic()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Pass ``signum`` on to every running process; the group ends when they have exited."""
        self.stopping = True
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signum)

    def run(self) -> int:
        """Start every process, restart those that exit, until stopped; returns the exit code."""
        for index in range(len(self.commands)):
            self.start(index)
        while True:
            if self.stopping:
                for process in self.processes:
                    if process is not None:
                        process.wait()
                return OK
            for index, process in enumerate(self.processes):
                if process is None or process.poll() is None or self.stopping:
                    continue
                if time.monotonic() - self.started_at[index] < CRASH_WINDOW:
                    self.crashes += 1
                    if self.crashes >= CRASH_LIMIT:
                        logger.error("worker-group: worker %d keeps exiting at start; giving up", index + 1)
                        self.stop()
                        for other in self.processes:
                            if other is not None:
                                other.wait()
                        return GAVE_UP
                logger.warning(
                    "worker-group: worker %d exited with %s; starting it again", index + 1, process.returncode
                )
                time.sleep(RESTART_DELAY)
                if not self.stopping:
                    self.start(index)
            time.sleep(POLL_INTERVAL)


def main(argv: list[str] | None = None) -> int:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("queue", help="the queue whose workers to run")
    parser.add_argument("--loglevel", "-l", default="info", help="Celery's log level (default: info)")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: len(argv) - len(extra) - (1 if "--" in argv else 0)])
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s] %(message)s")
    from config.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"worker-group: {exc}", file=sys.stderr)
        return BAD_INPUT
    count = worker_processes(settings)
    group = WorkerGroup(
        [
            worker_command(args.queue, settings, index, args.loglevel, extra=tuple(extra))
            for index in range(1, count + 1)
        ]
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        group.stop(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return group.run()


if __name__ == "__main__":
    sys.exit(main())
