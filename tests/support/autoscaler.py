"""The scaling engine as a real process (``celery -A config scale run``) for tests, and what it shows."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.wait import wait_for
from tests.support.worker import ROOT

#: An action line of the engine's log: ``scale orders: 1 -> 3: <reason>``.
ACTION = re.compile(r"^(?P<date>\S+ \S+) INFO scale (?P<queue>\S+): (?P<old>\d+) -> (?P<new>\d+): ")


class Autoscaler:
    """One ``celery -A config scale run`` subprocess, logging to ``<log_dir>/autoscale.log``."""

    def __init__(self, env: dict[str, str], log_dir: Path, *args: str) -> None:
        self.env = env
        self.run_dir = Path(env["PLATFORM_RUN_DIR"])
        self.log_path = log_dir / "autoscale.log"
        self.args = [sys.executable, "-m", "celery", "-A", "config", "scale", "run", *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Autoscaler:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda: "first pass done" in self.log() or self.process.poll() is not None,
            timeout,
            message=lambda: f"the autoscaler's first pass; log:\n{self.log()[-3000:]}",
        )
        assert self.process.poll() is None, f"the autoscaler exited:\n{self.log()[-3000:]}"
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pids(self, queue: str) -> list[int]:
        """Live worker processes of ``queue`` by the pid files in the run folder (what ``make down`` reads)."""
        alive = []
        for path in self.run_dir.glob(f"worker-{queue}-*.pid"):
            try:
                pid = int(path.read_text().strip())
                os.kill(pid, 0)
            except (OSError, ValueError):
                continue
            alive.append(pid)
        return alive

    def actions(self, queue: str) -> list[tuple[str, int, int]]:
        """(time, from, to) of each action the engine logged for ``queue``."""
        found = []
        for line in self.log().splitlines():
            match = ACTION.match(line)
            if match and match["queue"] == queue:
                found.append((match["date"], int(match["old"]), int(match["new"])))
        return found

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (the engine warm-stops its workers), then wait; SIGKILL the group if it takes longer."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGUSR1)  # its threads' stacks into the log (faulthandler)
                try:
                    self.process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def kill_leftover_workers(run_dir: Path) -> list[int]:
    """SIGKILL the process group of every live pid file in ``run_dir`` (a test's safety net); their pids."""
    killed = []
    for path in run_dir.glob("*.pid"):
        try:
            pid = int(path.read_text().strip())
            os.killpg(pid, signal.SIGKILL)
        except (OSError, ValueError):
            continue
        killed.append(pid)
    return killed
