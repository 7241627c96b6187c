"""The tasks chaos scenarios publish (loaded by the chaos workers).

``chaos.work`` records each attempt in the ledger file (``PLATFORM_TEST_LEDGER``),
then writes its side effect (a row in ``chaos_effects``) in the same transaction
as its completion mark (``PlatformTask.transaction``), then records ``done``.
A redelivery after the commit is absorbed by idempotency: the body does not run
again, so a task's side effect exists at most once however often it is delivered.

``chaos.flaky`` fails with a :class:`TransientError` on its first ``fails``
attempts (each retry waits in the queue's retry ladder), then does what
``chaos.work`` does; ``chaos.reject`` fails with a :class:`PermanentError`
(dead-lettered at once as ``permanent``) and never commits a side effect.
"""

from __future__ import annotations

import time
from typing import Any

from config import app
from tests.support.chaos_ledger import EFFECTS_TABLE
from tests.support.tasks import record
from workers.errors import PermanentError, TransientError


def commit_effect(task: Any) -> None:
    """The side effect and the completion mark, one commit; then ``done``."""
    with task.transaction() as db:
        db.execute(f"CREATE TABLE IF NOT EXISTS {EFFECTS_TABLE} (task_id TEXT)")
        db.execute(f"INSERT INTO {EFFECTS_TABLE} VALUES (?)", (task.request.id,))
    record("done", task.request.id)


@app.task(bind=True, name="chaos.work", shared=False)
def work(self, seconds: float = 0.0) -> None:
    record("attempt", self.request.id)
    if seconds:
        time.sleep(seconds)
    commit_effect(self)


@app.task(bind=True, name="chaos.flaky", retry_base=0.5, retry_jitter_max=0.2, shared=False)
def flaky(self, fails: int = 1) -> None:
    record("attempt", self.request.id, str(self.request.retries))
    if self.request.retries < fails:
        raise TransientError(f"chaos: attempt {self.request.retries + 1} of {fails + 1} fails")
    commit_effect(self)


@app.task(bind=True, name="chaos.reject", shared=False)
def reject(self) -> None:
    record("attempt", self.request.id)
    raise PermanentError("chaos: this one is refused for good")
