"""The local pool: ``celery -A config worker -Q <queue>`` processes on this host, started and retired by the engine.

Each worker runs in its own session (as ``make up`` starts them), logs to
``<run dir>/worker-<queue>-<n>.log`` and has its pid in ``worker-<queue>-<n>.pid``;
its environment carries ``PLATFORM_RUN_DIR`` (absolute), the mark by which
``make down`` knows it is ours. Its Celery node is ``<queue>-<n>@<host>``.

Growing starts new workers at once (they consume once they are ready).
Shrinking never interrupts work::

    running --resize down--> draining --holds nothing--> stopping --exited--> gone
              (cancel_consumer:          (SIGTERM: warm
               no new deliveries)         shutdown, idle)

The worker to retire is the newest idle one (``inspect active`` and
``inspect reserved`` say which hold nothing); a busy one only when none is
idle. A retiring worker first stops consuming the queue (``cancel_consumer``),
finishes what it holds (running and prefetched messages stay with it, acked
as they finish), and only then gets SIGTERM: Celery's warm shutdown of a
worker that holds nothing, so nothing goes back to the queue and nothing is
redelivered. Whatever it takes, a busy worker is never killed.

A worker that exits on its own (killed, crashed) is started again with the
same name and counted in :attr:`LocalPool.restarts`. The pool does this
bookkeeping when it is asked how many workers a queue has
(:meth:`LocalPool.workers`, once per engine pass). :meth:`LocalPool.close`
warm-stops every worker it started (SIGKILL for what is left after the
deadline), so nothing outlives the engine.

Control commands use a connection that gives up after a few seconds: when
the broker stalls, the pass goes on without them (a draining worker is asked
again next pass; the choice of whom to retire falls back to the newest).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError

from config.layout import pool_options

if TYPE_CHECKING:
    from celery import Celery

    from config.settings import Settings

logger = logging.getLogger(__name__)

#: A worker's states in the pool.
RUNNING, DRAINING, STOPPING = "running", "draining", "stopping"

#: Seconds to wait for workers' answers to a control command (inspect, cancel_consumer).
CONTROL_TIMEOUT = 1.0

#: Seconds to connect for a control command before the pass goes on without it.
CONTROL_CONNECT_TIMEOUT = 5.0

#: Seconds :meth:`LocalPool.close` waits for the warm shutdown before SIGKILL.
CLOSE_DEADLINE = 30.0

#: The worker command, before ``-Q`` and ``-n``.
WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "celery", "-A", "config", "worker")


class ControlUnavailable(RuntimeError):
    """The broker did not answer, so the workers could not be asked or told anything."""


@dataclass
class LocalWorker:
    """One worker process the pool started."""

    queue: str
    index: int
    process: subprocess.Popen[bytes]
    host: str
    state: str = RUNNING
    #: Whether the worker confirmed it stopped consuming (a draining worker).
    cancelled: bool = False
    started_at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        """Its file names in the run folder: ``worker-<queue>-<n>``."""
        return f"worker-{self.queue}-{self.index}"

    @property
    def node(self) -> str:
        """Its Celery node name: ``<queue>-<n>@<host>``."""
        return f"{self.queue}-{self.index}@{self.host}"

    @property
    def pid(self) -> int:
        return self.process.pid


class LocalPool:
    """Worker processes on this host, per queue (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        app: Celery | None = None,
        command: Sequence[str] = WORKER_COMMAND,
        extra_args: Sequence[str] = ("-l", "info"),
        environ: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        Args:
            settings: the platform's settings (its run folder, broker).
            app: a Celery app on the same broker, for control commands (default: built from ``settings``).
            command: the worker command before ``-Q``, the layout's pool options and ``-n``.
            extra_args: more worker options (default: ``-l info``).
            environ: the workers' environment (default: this process's), ``PLATFORM_RUN_DIR`` added.
            clock: monotonic seconds.
        """
        if app is None:
            from config.app import create_app

            app = create_app(settings, main="scale-pool")
        self.app = app
        self.run_dir = Path(settings.run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.command = tuple(command)
        # Each process runs as the worker layout says (solo by default: one task slot per process).
        self.pool_options = tuple(pool_options(settings))
        self.extra_args = tuple(extra_args)
        self.environ = {**(os.environ if environ is None else environ), "PLATFORM_RUN_DIR": str(self.run_dir)}
        self.clock = clock
        self.host = socket.gethostname()
        self._workers: list[LocalWorker] = []
        #: Workers that exited on their own and were started again, per queue.
        self.restarts: dict[str, int] = {}

    # ------------------------------------------------------------------ Pool

    def workers(self, queue: str) -> int:
        """Workers running for ``queue`` and not retiring, after restarting the dead and retiring the drained."""
        self._tend(queue)
        return len(self._running(queue))

    def resize(self, queue: str, desired: int, reason: str) -> None:
        """Start workers, or pick workers to retire, until ``queue`` has ``desired`` running.

        Args:
            queue: the queue.
            desired: workers it should have (not below 0).
            reason: the engine's reason (the engine logs it).
        """
        running = self._running(queue)
        if desired > len(running):
            for _ in range(desired - len(running)):
                worker = self._start(queue, self._free_index(queue))
                logger.info("scale %s: started %s (pid %d)", queue, worker.node, worker.pid)
        elif desired < len(running):
            for worker in self._retire_order(running)[: len(running) - desired]:
                worker.state = DRAINING
                self._cancel(worker)
                logger.info(
                    "scale %s: retiring %s (pid %d): it stops consuming", queue, worker.node, worker.pid
                )

    # ------------------------------------------------------------ the rest

    def processes(self, queue: str | None = None) -> list[LocalWorker]:
        """Every worker process the pool has (any state), of ``queue`` or all."""
        return [w for w in self._workers if queue is None or w.queue == queue]

    def close(self, deadline: float = CLOSE_DEADLINE) -> None:
        """Warm-stop every worker the pool started; SIGKILL the process groups left after ``deadline`` s."""
        for worker in self._workers:
            if worker.process.poll() is None:
                self._signal(worker, signal.SIGTERM)
        end = self.clock() + deadline
        for worker in self._workers:
            try:
                worker.process.wait(timeout=max(end - self.clock(), 0.0))
            except subprocess.TimeoutExpired:
                logger.warning("scale: %s did not stop within %g s; SIGKILL", worker.node, deadline)
            self._signal(worker, signal.SIGKILL)  # the group: pool children left behind
            worker.process.wait()
            self._forget(worker)
        self._workers.clear()

    def _running(self, queue: str) -> list[LocalWorker]:
        return [w for w in self._workers if w.queue == queue and w.state == RUNNING]

    def _tend(self, queue: str) -> None:
        """Restart the dead, move draining workers on, forget the stopped."""
        for worker in self.processes(queue):
            code = worker.process.poll()
            if code is not None:
                self._signal(worker, signal.SIGKILL)  # its pool children, if any are left
                self._forget(worker)
                self._workers.remove(worker)
                if worker.state == RUNNING:
                    self.restarts[queue] = self.restarts.get(queue, 0) + 1
                    again = self._start(queue, worker.index)
                    logger.warning(
                        "scale %s: %s exited with %s; started again (pid %d; %d restarts)",
                        queue, worker.node, code, again.pid, self.restarts[queue],
                    )  # fmt: skip
                continue
            if worker.state == DRAINING:
                if not worker.cancelled:
                    self._cancel(worker)
                if worker.cancelled and self._holds_nothing(worker):
                    worker.state = STOPPING
                    self._signal(worker, signal.SIGTERM)
                    logger.info("scale %s: %s holds nothing; warm shutdown", queue, worker.node)

    def _start(self, queue: str, index: int) -> LocalWorker:
        name = f"worker-{queue}-{index}"
        log_path = self.run_dir / f"{name}.log"
        if log_path.exists():
            log_path.replace(self.run_dir / f"{name}.log.1")
        args = [*self.command, "-Q", queue, *self.pool_options, "-n", f"{queue}-{index}@%h", *self.extra_args]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                args,
                env=self.environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.run_dir / f"{name}.pid").write_text(f"{process.pid}\n")
        worker = LocalWorker(queue, index, process, self.host, started_at=self.clock())
        self._workers.append(worker)
        return worker

    def _free_index(self, queue: str) -> int:
        """The lowest worker number of ``queue`` that no worker of ours (or a live pid file) holds."""
        taken = {w.index for w in self.processes(queue)}
        index = 1
        while index in taken or self._pid_file_alive(f"worker-{queue}-{index}"):
            index += 1
        return index

    def _pid_file_alive(self, name: str) -> bool:
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
        return True

    def _forget(self, worker: LocalWorker) -> None:
        pid_file = self.run_dir / f"{worker.name}.pid"
        try:
            if pid_file.read_text().strip() == str(worker.pid):
                pid_file.unlink()
        except OSError:
            pass

    def _retire_order(self, running: list[LocalWorker]) -> list[LocalWorker]:
        """``running`` in the order to retire them: idle before busy, newest first within each."""
        held = self._held([w.node for w in running])
        newest_first = sorted(running, key=lambda w: (w.started_at, w.index), reverse=True)
        return sorted(newest_first, key=lambda w: held.get(w.node, 0) > 0)

    def _holds_nothing(self, worker: LocalWorker) -> bool:
        """Whether ``worker`` answered that it runs and has reserved nothing."""
        return self._held([worker.node]).get(worker.node) == 0

    @contextmanager
    def _control(self) -> Iterator[Any]:
        """A connection for control commands that gives up quickly (a stalled broker must not stall the engine).

        Raises:
            ControlUnavailable: the broker did not answer.
        """
        connection = self.app.connection_for_write()
        try:
            try:
                connection.ensure_connection(max_retries=1, timeout=CONTROL_CONNECT_TIMEOUT)
            except (OperationalError, OSError, AMQPError) as exc:
                raise ControlUnavailable(str(exc)) from exc
            yield connection
        finally:
            connection.release()

    def _held(self, nodes: list[str]) -> dict[str, int]:
        """Tasks each node runs or has reserved, by node (nodes that did not answer are left out)."""
        if not nodes:
            return {}
        held: dict[str, int] = {}
        try:
            with self._control() as connection:
                inspect = self.app.control.inspect(
                    destination=nodes, timeout=CONTROL_TIMEOUT, limit=len(nodes), connection=connection
                )
                answers = (inspect.active(), inspect.reserved())
        except (ControlUnavailable, OperationalError, OSError, AMQPError) as exc:
            logger.warning("scale: workers not asked what they hold (the broker did not answer): %s", exc)
            return {}
        for answer in answers:
            if not answer:
                return {}
            for node, tasks in answer.items():
                held[node] = held.get(node, 0) + len(tasks or ())
        return {node: count for node, count in held.items() if node in nodes}

    def _cancel(self, worker: LocalWorker) -> None:
        """Ask ``worker`` to stop consuming its queue; remember whether it confirmed."""
        try:
            with self._control() as connection:
                replies: Any = self.app.control.cancel_consumer(
                    worker.queue,
                    destination=[worker.node],
                    reply=True,
                    timeout=CONTROL_TIMEOUT,
                    limit=1,
                    connection=connection,
                )
        except (ControlUnavailable, OperationalError, OSError, AMQPError) as exc:
            logger.warning("scale: %s not told to stop consuming yet: %s", worker.node, exc)
            return
        worker.cancelled = any(worker.node in reply for reply in replies or ())

    def _signal(self, worker: LocalWorker, signum: int) -> None:
        """SIGTERM to the main process (it stops its pool itself); SIGKILL to its whole process group."""
        try:
            if signum == signal.SIGKILL:
                os.killpg(worker.pid, signum)
            else:
                os.kill(worker.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
