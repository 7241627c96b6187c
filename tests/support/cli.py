"""Run the platform's command line (``celery -A config ...``) in a subprocess, as an operator would."""

from __future__ import annotations

import subprocess
import sys

from tests.support.worker import ROOT


def run_cli(
    env: dict[str, str], *args: str, input: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``python -m celery -A config <args>`` with ``env``; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        check=False,
    )
