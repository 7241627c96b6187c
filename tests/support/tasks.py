"""Tasks with controllable behaviour, for tests (loaded by test workers).

Each records what happened in a ledger file (``PLATFORM_TEST_LEDGER``), one
line per event: ``<event> <task id> <unix time> <extra>``. Appends of small
lines are atomic, so several pool processes can share it.
"""

from __future__ import annotations

import os
import time

from config import app
from workers.delivery.idempotency import SQLiteStore
from workers.errors import PermanentError, TransientError


def record(event: str, task_id: str, extra: str = "") -> None:
    path = os.environ.get("PLATFORM_TEST_LEDGER")
    if not path:
        return
    line = f"{event} {task_id} {time.time():.6f} {extra}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task(bind=True, name="tests.ok", shared=False)
def ok(self, value: object = None) -> object:
    record("done", self.request.id)
    return value


@app.task(bind=True, name="tests.flaky", retry_base=0.2, retry_jitter_max=0.1, shared=False)
def flaky(self, fail_times: int) -> int:
    record("attempt", self.request.id, str(self.request.retries))
    if self.request.retries < fail_times:
        raise TransientError("upstream timed out")
    record("done", self.request.id)
    return self.request.retries


@app.task(bind=True, name="tests.always_transient", retry_base=0.05, retry_jitter_max=0.05, shared=False)
def always_transient(self) -> None:
    record("attempt", self.request.id, str(self.request.retries))
    raise TimeoutError("upstream never answers")


@app.task(bind=True, name="tests.permanent", shared=False)
def permanent(self) -> None:
    record("attempt", self.request.id, str(self.request.retries))
    raise PermanentError("order 42 is invalid: <script>alert(1)</script>")


@app.task(bind=True, name="tests.unknown", retry_base=0.05, retry_jitter_max=0.05, shared=False)
def unknown(self) -> None:
    record("attempt", self.request.id, str(self.request.retries))
    raise RuntimeError("something unexpected")


@app.task(bind=True, name="tests.slow", shared=False)
def slow(self, seconds: float) -> None:
    record("start", self.request.id)
    time.sleep(seconds)
    record("done", self.request.id)


@app.task(bind=True, name="tests.die", shared=False)
def die(self) -> None:
    record("attempt", self.request.id)
    os._exit(1)


@app.task(bind=True, name="tests.commit_then_die", shared=False)
def commit_then_die(self, key: str) -> None:
    """Commit a side effect with the completion mark, then die before the ack."""
    record("attempt", self.request.id)
    placeholder = "?" if isinstance(db_marker := self.completion_store(), SQLiteStore) else "%s"
    del db_marker
    with self.transaction() as db:
        db.execute("CREATE TABLE IF NOT EXISTS side_effects (key TEXT)")
        db.execute(f"INSERT INTO side_effects VALUES ({placeholder})", (key,))
    os._exit(1)


@app.task(bind=True, name="tests.flaky_long", retry_base=15.0, retry_jitter_max=0.5, shared=False)
def flaky_long(self) -> None:
    """Fails once, then waits about 15 s in the broker before succeeding.

    Long enough that a warm shutdown on a loaded machine still finds the last
    failures waiting in the delay queue."""
    record("attempt", self.request.id, str(self.request.retries))
    if self.request.retries < 1:
        raise TransientError("first attempt always times out")
    record("done", self.request.id)


@app.task(
    bind=True,
    name="tests.backoff_forever",
    retry_base=300.0,
    retry_max_delay=300.0,
    retry_jitter_max=0.5,
    shared=False,
)
def backoff_forever(self) -> None:
    """Fails transiently; the retry waits five minutes in the broker (longer than any test)."""
    raise TransientError("try again in a minute")


@app.task(
    bind=True,
    name="tests.flaky_many",
    retry_base=0.02,
    retry_jitter_max=0.01,
    retry_max_delay=0.1,
    max_retries=12,
    shared=False,
)
def flaky_many(self, fail_times: int) -> int:
    """Times out ``fail_times`` times (capped waits of 0.1 s, so later retries share the last tier)."""
    record("attempt", self.request.id, str(self.request.retries))
    if self.request.retries < fail_times:
        raise TransientError("upstream timed out again")
    record("done", self.request.id)
    return self.request.retries


@app.task(bind=True, name="tests.slow_backoff", retry_base=2.5, retry_jitter_max=0.1, shared=False)
def slow_backoff(self) -> None:
    """Fails once, then waits 2.5 s in the broker (longer than a short ``expires``)."""
    record("attempt", self.request.id, str(self.request.retries))
    if self.request.retries < 1:
        raise TransientError("first attempt times out")
    record("done", self.request.id)


@app.task(bind=True, name="tests.retry_with_countdown", shared=False)
def retry_with_countdown(self, countdown: float, times: int = 1) -> None:
    """Retries itself ``times`` times with ``self.retry(countdown=...)`` (the delay levels hold it)."""
    record("attempt", self.request.id, str(self.request.retries))
    if self.request.retries < times:
        raise self.retry(countdown=countdown, max_retries=times)
    record("done", self.request.id)


@app.task(bind=True, name="tests.scale_work", shared=False)
def scale_work(self, seconds: float) -> None:
    """Sleep ``seconds``; the ledger's start line says whether the broker redelivered the message."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    record("start", self.request.id, f"redelivered={int(redelivered)}")
    time.sleep(seconds)
    record("done", self.request.id)
