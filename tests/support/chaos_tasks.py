"""The task every chaos scenario publishes (loaded by the chaos workers).

``chaos.work`` records each attempt in the ledger file (``PLATFORM_TEST_LEDGER``),
then writes its side effect (a row in ``chaos_effects``) in the same transaction
as its completion mark (``PlatformTask.transaction``), then records ``done``.
A redelivery after the commit is absorbed by idempotency: the body does not run
again, so a task's side effect exists at most once however often it is delivered.
"""

from __future__ import annotations

import time

from config import app
from tests.support.chaos_ledger import EFFECTS_TABLE
from tests.support.tasks import record


@app.task(bind=True, name="chaos.work", shared=False)
def work(self, seconds: float = 0.0) -> None:
    record("attempt", self.request.id)
    if seconds:
        time.sleep(seconds)
    with self.transaction() as db:
        db.execute(f"CREATE TABLE IF NOT EXISTS {EFFECTS_TABLE} (task_id TEXT)")
        db.execute(f"INSERT INTO {EFFECTS_TABLE} VALUES (?)", (self.request.id,))
    record("done", self.request.id)
