"""A real ``celery -A config beat`` process for tests, started like the workers are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.wait import wait_for
from tests.support.worker import ROOT

#: What beat logs once its scheduler runs (after the banner).
READY_LINE = "beat: Starting..."


class BeatProcess:
    """One ``celery beat`` subprocess in its own process group, with its schedule, pid and log files.

    The schedule file (``-s``) and the pid file (``--pidfile``) live in
    ``run_dir``, never in the project root, so nothing of one run outlives
    its test.
    """

    def __init__(self, env: dict[str, str], run_dir: Path) -> None:
        self.env = env
        self.schedule_path = run_dir / "celerybeat-schedule"
        self.pid_path = run_dir / "celerybeat.pid"
        self.log_path = run_dir / "beat.log"
        self.args = [
            sys.executable, "-m", "celery", "-A", "config", "beat",
            "-s", str(self.schedule_path), "--pidfile", str(self.pid_path), "-l", "info",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> BeatProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        wait_for(
            lambda: READY_LINE in self.log() or self.process.poll() is not None,
            timeout,
            message=lambda: f"beat to start; log:\n{self.log()[-3000:]}",
        )
        if self.process.poll() is not None:
            raise AssertionError(f"beat exited at start:\n{self.log()[-3000:]}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sent(self, entry: str) -> int:
        """How many times beat has logged sending ``entry``."""
        return self.log().count(f"Scheduler: Sending due task {entry} (")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (beat saves its schedule and exits), then SIGKILL of the whole group if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def __enter__(self) -> BeatProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
