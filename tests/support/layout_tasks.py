"""Tasks for the worker-layout tests (add to ``PLATFORM_TASK_MODULES``).

They record into the same ledger as :mod:`tests.support.tasks`, with the
worker process's pid as the line's extra, so a test can tell which process
ran what and when.
"""

from __future__ import annotations

import os
import time

from config import app
from tests.support.tasks import record


@app.task(bind=True, name="tests.layout.work", shared=False)
def work(self, seconds: float) -> None:
    """Sleep ``seconds`` (a stand-in for I/O), recording start and end with this process's pid."""
    record("start", self.request.id, str(os.getpid()))
    time.sleep(seconds)
    record("done", self.request.id, str(os.getpid()))
