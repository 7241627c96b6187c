"""Consumer bootstep for the solo pool: time limits, and heartbeats while a task runs.

Celery's solo pool runs a task in the thread that also runs the consumer's
event loop, so while a task runs nothing else happens in the process: no
broker heartbeats are sent (a task longer than about two heartbeat intervals
would have its connection closed by the broker and its message redelivered
while it still runs), and the pool enforces no time limits. This step, active
only when the worker's pool is solo, adds:

- **heartbeats**: a watcher thread sends a heartbeat frame on the consuming
  connection and on the task-events connection every half heartbeat interval
  while a task runs. It writes only while the main thread is inside the task
  body (between Celery's ``task_prerun`` and ``task_postrun`` signals), and the
  main thread takes the same lock before it goes back to the connection.
- **soft time limit**: an alarm signal (``SIGALRM``, in the main thread, where
  the task runs) raises :class:`~celery.exceptions.SoftTimeLimitExceeded` in
  the task body, as the prefork pool does; the task's classifier decides.
- **hard time limit**: the watcher ends the process (exit code
  :data:`HARD_LIMIT_EXIT`, one ERROR line first). The broker redelivers the
  message and counts the delivery, as for any worker that died; the poison
  limit dead-letters a task that keeps hitting it. The worker group
  (:mod:`workers.ops.worker_group`) starts the process again.

Limits are the message's ``timelimit`` header, else the task's
``time_limit`` / ``soft_time_limit``, else ``task_time_limit`` /
``task_soft_time_limit`` (Celery's order).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from celery import bootsteps
from celery.concurrency.solo import TaskPool as SoloPool
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun, task_prerun

logger = logging.getLogger(__name__)

#: Exit code of a solo worker process that ended a task at its hard time limit.
HARD_LIMIT_EXIT = 70
#: Longest sleep of the watcher thread while a task runs, in seconds (hard-limit precision).
WATCH_INTERVAL = 0.25


class RunningTask:
    """What the watcher knows of the task the main thread is running."""

    __slots__ = ("hard_deadline", "hard_limit", "name", "started", "task_id")

    def __init__(self, name: str, task_id: str, hard_limit: float | None) -> None:
        self.name = name
        self.task_id = task_id
        self.started = time.monotonic()
        self.hard_limit = hard_limit
        self.hard_deadline = None if hard_limit is None else self.started + hard_limit


def time_limits(task: Any) -> tuple[float | None, float | None]:
    """``(hard, soft)`` seconds for the task being run (None: no limit), in Celery's order of precedence."""
    header = getattr(task.request, "timelimit", None) or (None, None)
    conf = task.app.conf
    hard = header[0] or task.time_limit or conf.task_time_limit
    soft = header[1] or task.soft_time_limit or conf.task_soft_time_limit
    return (float(hard) if hard else None, float(soft) if soft else None)


class SoloGuard(bootsteps.StartStopStep):
    """Heartbeats and time limits for a worker whose pool is solo."""

    name = "platform solo guard"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.consumer = parent
        self.heartbeat = float(getattr(parent, "amqheartbeat", 0) or 0)
        self.lock = threading.Lock()
        self.running: RunningTask | None = None
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.uid = f"platform-solo-guard-{id(self)}"

    def include_if(self, parent: Any) -> bool:
        return isinstance(getattr(parent, "pool", None), SoloPool)

    def start(self, c: Any) -> None:
        if self.thread is not None:
            return
        signal.signal(signal.SIGALRM, self._on_alarm)
        task_prerun.connect(self._on_prerun, weak=False, dispatch_uid=f"{self.uid}-pre")
        task_postrun.connect(self._on_postrun, weak=False, dispatch_uid=f"{self.uid}-post")
        self.thread = threading.Thread(target=self._watch, name="platform-solo-guard", daemon=True)
        self.thread.start()

    def shutdown(self, c: Any) -> None:
        task_prerun.disconnect(dispatch_uid=f"{self.uid}-pre")
        task_postrun.disconnect(dispatch_uid=f"{self.uid}-post")
        self.stopped.set()
        self.wake.set()

    # -- the main thread ------------------------------------------------------

    def _on_prerun(self, sender: Any = None, task_id: str = "", task: Any = None, **kwargs: Any) -> None:
        if task is None or task.request.is_eager:
            return
        hard, soft = time_limits(task)
        if soft is not None:
            signal.setitimer(signal.ITIMER_REAL, soft)
        self.running = RunningTask(task.name, task_id, hard)
        if hard is not None:
            self.wake.set()  # the watcher sleeps no longer than the deadline

    def _on_postrun(self, sender: Any = None, task: Any = None, **kwargs: Any) -> None:
        if self.running is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        with self.lock:  # the watcher is not writing to a connection past this point
            running, self.running = self.running, None
        if self.heartbeat and time.monotonic() - running.started > self.heartbeat / 2:
            # The loop read nothing while the task ran; the broker's heartbeats
            # wait unread in the socket. Judge missed heartbeats from now on.
            for connection in self._connections():
                if hasattr(connection, "last_heartbeat_received"):
                    connection.last_heartbeat_received = time.monotonic()

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        running = self.running
        if running is not None:
            raise SoftTimeLimitExceeded(f"soft time limit exceeded by {running.name}[{running.task_id}]")

    # -- the watcher thread ---------------------------------------------------

    def _connections(self) -> list[Any]:
        """The raw AMQP connections of the consumer and of its task events."""
        found = []
        for owner in (self.consumer, getattr(self.consumer, "event_dispatcher", None)):
            connection = getattr(owner, "connection", None)
            raw = getattr(connection, "_connection", None)
            if raw is not None:
                found.append(raw)
        return found

    def _watch(self) -> None:
        interval = self.heartbeat / 2 if self.heartbeat else None
        while not self.stopped.is_set():
            running = self.running
            if running is None:
                self.wake.wait(WATCH_INTERVAL if interval is None else min(interval, 1.0))
                self.wake.clear()
                continue
            now = time.monotonic()
            if running.hard_deadline is not None and now >= running.hard_deadline:
                self._end_process(running)
            if interval is not None and now - running.started >= interval:
                self._send_heartbeats(running)
            self.wake.wait(WATCH_INTERVAL)
            self.wake.clear()

    def _send_heartbeats(self, running: RunningTask) -> None:
        with self.lock:
            if self.running is not running:
                return  # the task ended: the main thread owns the connections again
            for connection in self._connections():
                last = getattr(connection, "last_heartbeat_sent", 0) or 0
                if time.monotonic() - last < self.heartbeat / 2:
                    continue
                try:
                    connection.send_heartbeat()
                    connection.last_heartbeat_sent = time.monotonic()
                except Exception as exc:  # noqa: BLE001 - the loop finds a broken connection itself
                    logger.warning("could not send a heartbeat while %s runs: %r", running.name, exc)

    def _end_process(self, running: RunningTask) -> None:
        logger.error(
            "hard time limit (%ss) exceeded for %s[%s]; ending this solo worker process so the broker "
            "redelivers its message (exit %d)",
            running.hard_limit,
            running.name,
            running.task_id,
            HARD_LIMIT_EXIT,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(HARD_LIMIT_EXIT)
