"""Real worker processes (``celery -A config worker``) for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it takes too long."""
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
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
