"""Real worker processes (``celery -A config worker``) for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.support.wait import wait_for

#: The project root, so workers import ``config`` and ``tests.support.tasks``.
ROOT = Path(__file__).resolve().parents[2]


def platform_environment(broker_url: str, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Environment for a platform process on ``broker_url`` with test defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "CELERY_"))}
    env.update(
        {
            "CELERY_BROKER_URL": broker_url,
            "PLATFORM_QUEUES": "orders,payments",
            "PLATFORM_TASK_MODULES": "tests.support.tasks",
            "PLATFORM_STATE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}",
            "PLATFORM_TEST_LEDGER": str(tmp_path / "ledger.txt"),
            "PLATFORM_PUBLISH_TIMEOUT": "5",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


#: Workers told to stop (``stop(wait=False)``) that nobody has waited for yet.
_stopping: list[WorkerProcess] = []
#: How many such workers may still be shutting down while a new test starts.
MAX_STOPPING = 3


def reap_stopping(block: bool = False) -> None:
    """Finish the stops begun with ``wait=False``.

    Those whose process exited or whose deadline passed are finished at once;
    the oldest are waited for until at most :data:`MAX_STOPPING` remain, or
    all of them with ``block`` (at the end of the session).
    """
    for worker in list(_stopping):
        assert worker.process is not None
        if worker.process.poll() is not None or time.monotonic() > worker._stop_deadline:
            worker._finish_stop()
            _stopping.remove(worker)
    while _stopping and (block or len(_stopping) > MAX_STOPPING):
        _stopping.pop(0)._finish_stop()


class WorkerProcess:
    """One ``celery worker`` subprocess with its own log file."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        queues: str = "orders",
        concurrency: int = 2,
        pool: str = "prefork",
        name: str | None = None,
    ) -> None:
        self.env = env
        self.name = name or f"w{uuid.uuid4().hex[:6]}"
        self.log_path = log_dir / f"worker-{self.name}.log"
        self.args = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", queues, "-c", str(concurrency), "-P", pool,
            "-n", f"{self.name}@%h", "-l", "info",
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._stop_deadline = 0.0

    @classmethod
    def laid_out(
        cls, env: dict[str, str], log_dir: Path, queue: str = "orders", index: int = 1
    ) -> WorkerProcess:
        """The ``index``-th worker process of ``queue`` as ``make up`` starts it under ``env``'s layout.

        Its command line is :func:`config.layout.worker_command`'s
        (``PLATFORM_WORKER_LAYOUT``, default solo), plus ``--without-mingle --without-gossip``.
        """
        from config.layout import worker_command
        from config.settings import load_settings

        worker = cls(env, log_dir, queue)
        worker.args = worker_command(
            queue, load_settings(env), index, extra=("--without-mingle", "--without-gossip")
        )
        return worker

    @classmethod
    def group(cls, env: dict[str, str], log_dir: Path, queue: str = "orders") -> WorkerProcess:
        """``python -m workers.ops.worker_group queue``: all of ``queue``'s processes, restarted if one dies."""
        worker = cls(env, log_dir, queue)
        worker.args = [
            sys.executable, "-m", "workers.ops.worker_group", queue, "-l", "info",
            "--", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        return worker

    def start(self, timeout: float = 60) -> WorkerProcess:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        wait_for(
            lambda: " ready." in self.log_since_start() or self.process.poll() is not None,
            timeout,
            message=lambda: f"worker {self.name} to be ready; log:\n{self.log_since_start()[-3000:]}",
        )
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited at start:\n{self.log_since_start()[-3000:]}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        return self.log()[self._log_offset :]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def child_pids(self) -> list[int]:
        """The prefork pool processes (children of the main process)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            return []

    def kill_main(self) -> None:
        """SIGKILL the main process and its whole process group (the pool too)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 30, wait: bool = True) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it takes longer than ``timeout``.

        With ``wait=False`` it returns once the signal is sent and
        :func:`reap_stopping` finishes the stop later (the fixtures use it, so
        the next test need not wait out this worker's shutdown of a second or two).
        """
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        self._stop_deadline = time.monotonic() + timeout
        if wait:
            self._finish_stop()
        else:
            _stopping.append(self)

    def _finish_stop(self) -> None:
        """Wait for the main process until the stop's deadline, then kill what is left of its group."""
        assert self.process is not None
        try:
            self.process.wait(timeout=max(self._stop_deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            self.kill_main()
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
