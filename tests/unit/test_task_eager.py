"""``apply()`` and ``task_always_eager`` keep Celery's meaning: the body runs here, no lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.unit.fakes import unit_app
from workers.errors import TransientError


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Celery]:
    app = unit_app(tmp_path)
    app.conf.task_always_eager = True
    app.finalize()
    yield app
    app.close()


def test_an_eager_failure_is_the_tasks_own_exception(app: Celery) -> None:
    @app.task(name="tests.eager_bad", bind=True, shared=False)
    def bad(self: Any) -> None:
        raise ValueError("no lines")

    result = bad.delay()
    assert (result.state, type(result.result), str(result.result)) == ("FAILURE", ValueError, "no lines")


def test_an_eager_retry_runs_again_in_process_as_in_celery(app: Celery) -> None:
    @app.task(name="tests.eager_flaky", bind=True, shared=False)
    def flaky(self: Any, failures: int) -> int:
        if self.request.retries < failures:
            raise self.retry(exc=TransientError("busy"), countdown=0)
        return self.request.retries

    assert flaky.delay(2).get() == 2


def test_celerys_own_tasks_keep_max_retries_none_as_retry_forever(app: Celery) -> None:
    """``celery.chord_unlock`` polls a chord by retrying with max_retries=None: it must not give up."""
    assert app.tasks["celery.chord_unlock"]._retry_policy.max_retries > 10**6
