"""Worker processes of a side: started fresh, measured with psutil, stopped.

Every side runs its workers as real subprocesses in their own session (so the
whole tree can be stopped without touching anyone else's processes): ``celery
worker`` (platform or stock), ``dramatiq``, or the raw py-amqp consumer. Sides
without a worker run a tool (``tests/bench/tools``) as a fresh process that
times its own work and prints the result as one JSON line (:func:`run_tool`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

#: The project root: workers import ``config``, ``workers`` and ``tests.bench``.
ROOT = Path(__file__).resolve().parents[2]
#: Workers and pool processes per side (prefork everywhere).
CONCURRENCY = 2
#: Variables of ours that must not leak from the caller's environment into a side.
OWN_PREFIXES = ("PLATFORM_", "CELERY_", "BENCH_")


def base_environment(broker_url: str, **extra: str) -> dict[str, str]:
    """The caller's environment without our variables, plus the broker and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.update({"CELERY_BROKER_URL": broker_url, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def platform_environment(broker_url: str, folder: Path, **extra: str) -> dict[str, str]:
    """Environment of a platform process with its work queue ``bench``."""
    return base_environment(
        broker_url,
        PLATFORM_QUEUES="bench",
        PLATFORM_TASK_MODULES="tests.bench.apps.platform_tasks",
        PLATFORM_STATE_URL=f"sqlite:///{folder / 'state.sqlite3'}",
        PLATFORM_RUN_DIR=str(folder),
        **extra,
    )


def celery_worker_command(app: str, queue: str, name: str) -> list[str]:
    """``celery worker`` with prefork, concurrency 2 and warnings-only logging."""
    return [
        sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue,
        "-c", str(CONCURRENCY), "-P", "prefork", "-n", f"{name}@%h", "-l", "warning",
        "--without-mingle", "--without-gossip",
    ]  # fmt: skip


def layout_worker_command(queue: str) -> list[str]:
    """The platform's worker group for ``queue`` (its layout from ``PLATFORM_WORKER_LAYOUT``)."""
    return [
        sys.executable, "-m", "workers.ops.worker_group", queue, "-l", "warning",
        "--", "--without-mingle", "--without-gossip",
    ]  # fmt: skip


def dramatiq_worker_command(module: str, queue: str) -> list[str]:
    """``dramatiq`` with 2 worker processes of 1 thread each (like prefork -c 2)."""
    return [
        sys.executable, "-m", "dramatiq", module, "--processes", str(CONCURRENCY),
        "--threads", "1", "--queues", queue,
    ]  # fmt: skip


@dataclass
class BenchProcess:
    """One subprocess (and its children) belonging to one side of one round."""

    command: list[str]
    env: dict[str, str]
    folder: Path
    name: str = field(default_factory=lambda: f"p{uuid.uuid4().hex[:6]}")
    #: Stop with a warm shutdown (needed to write profiles); otherwise SIGKILL at once,
    #: which is safe because the side's vhost is deleted right after.
    graceful: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self) -> BenchProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def tree(self) -> list[psutil.Process]:
        """The main process and all its descendants that are still alive."""
        if not self.alive():
            return []
        assert self.process is not None
        try:
            main = psutil.Process(self.process.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss_bytes(self) -> int:
        """Resident memory of the whole tree (main and pool processes)."""
        total = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the tree, including reaped children."""
        total = 0.0
        for proc in self.tree():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + times.children_user + times.children_system
        return total

    def stop(self, timeout: float = 300.0) -> None:
        """SIGKILL the session, after a warm shutdown (SIGTERM) if ``graceful``.

        A profiled worker writes its profiles while shutting down, which takes a
        while after a long run under tracemalloc: hence the long ``timeout``.
        """
        if self.process is None:
            return
        if self.graceful and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> BenchProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_tool(
    tool: str, env: dict[str, str], arguments: list[str], folder: Path, timeout: float
) -> dict[str, Any]:
    """Run ``python -m tests.bench.tools.<tool>`` in a fresh process; its JSON result (last line).

    Raises:
        RuntimeError: it failed or printed no result; the message has its output.
    """
    command = [sys.executable, "-m", f"tests.bench.tools.{tool}", *arguments]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, timeout=timeout, check=False)
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        (folder / f"{tool}.log").write_bytes(done.stdout + done.stderr)
        raise RuntimeError(
            f"{tool} {' '.join(arguments)} exited {done.returncode}: "
            + done.stderr.decode(errors="replace")[-1500:]
        )
    return json.loads(lines[-1])
