"""Tasks for the results and canvas tests (loaded by test workers beside ``tests.support.tasks``).

Each records what happened in the ledger file of :mod:`tests.support.tasks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery.result import AsyncResult

from config import app
from tests.support.tasks import record
from workers.errors import PermanentError, TransientError


class GatewayDown(TransientError):
    """The payment gateway did not answer (a transient failure of the tests' own type)."""


class InvalidOrder(PermanentError):
    """The order can never be charged (a permanent failure of the tests' own type)."""


@app.task(
    bind=True, name="results.gateway_down", max_retries=2, retry_base=0.8, retry_jitter_max=0.05, shared=False
)
def gateway_down(self) -> None:
    record("attempt", self.request.id, str(self.request.retries))
    raise GatewayDown("gateway 7 did not answer")


@app.task(bind=True, name="results.invalid_order", shared=False)
def invalid_order(self, order_id: str = "o-1") -> None:
    record("attempt", self.request.id, str(self.request.retries))
    raise InvalidOrder(f"order {order_id} has no lines")


@app.task(bind=True, name="results.answer", shared=False)
def answer(self) -> dict:
    record("done", self.request.id)
    return {"answer": 42}


@app.task(bind=True, name="results.add", shared=False)
def add(self, x: int, y: int) -> int:
    record("done", self.request.id, f"{x}+{y}")
    return x + y


@app.task(bind=True, name="results.add_flaky", retry_base=0.2, retry_jitter_max=0.05, shared=False)
def add_flaky(self, x: int, y: int) -> int:
    """Times out on its first attempt, then adds."""
    record("attempt", self.request.id, str(self.request.retries))
    if self.request.retries < 1:
        raise GatewayDown("first attempt times out")
    record("done", self.request.id, f"{x}+{y}")
    return x + y


@app.task(bind=True, name="results.total", shared=False)
def total(self, values: list[int]) -> int:
    record("done", self.request.id, ",".join(map(str, values)))
    return sum(values)


@app.task(bind=True, name="results.needs_flag", shared=False)
def needs_flag(self, flag: str) -> int:
    """Fails for good until the file ``flag`` exists (an operator fixes the cause, then replays)."""
    record("attempt", self.request.id, str(self.request.retries))
    if not Path(flag).exists():
        raise InvalidOrder(f"{flag} is missing")
    record("done", self.request.id)
    return 5


@app.task(name="results.on_error", shared=False)
def on_error(request: Any, exc: BaseException, traceback: str) -> None:
    """An errback with Celery's (request, exc, traceback) signature: runs in the failing worker."""
    record("errback", request.id, type(exc).__name__)


@app.task(bind=True, name="results.on_error_id", shared=False)
def on_error_id(self, task_id: str) -> None:
    """An errback that gets the failed task's id and reads its exception from the result backend."""
    result = AsyncResult(task_id, app=self.app)
    record("errback-id", task_id, type(result.result).__name__)
