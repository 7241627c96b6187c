"""Tasks with time and rate limits, for tests (add to ``PLATFORM_TASK_MODULES``).

They record into the same ledger as :mod:`tests.support.tasks` (one line per
event: ``<event> <task id> <unix time> <extra>``).
"""

from __future__ import annotations

import time

from celery.exceptions import SoftTimeLimitExceeded

from config import app
from tests.support.tasks import record

#: Seconds a time-limited task is allowed; its body would take much longer.
LIMIT = 0.3
#: Backoff of the time-limited tasks: tiny, so retries come back at once.
TINY_BACKOFF = {"retry_base": 0.05, "retry_jitter_max": 0.01}


@app.task(bind=True, name="tests.limits.soft", soft_time_limit=LIMIT, shared=False, **TINY_BACKOFF)
def over_soft_limit(self) -> None:
    """Sleeps past its soft time limit (SoftTimeLimitExceeded is raised in the body)."""
    record("attempt", self.request.id, str(self.request.retries))
    time.sleep(30)


@app.task(bind=True, name="tests.limits.hard", time_limit=LIMIT, shared=False, **TINY_BACKOFF)
def over_hard_limit(self) -> None:
    """Sleeps past its hard time limit (the pool process is killed)."""
    record("attempt", self.request.id, str(self.request.retries))
    time.sleep(30)


@app.task(
    bind=True,
    name="tests.limits.soft_transient",
    soft_time_limit=LIMIT,
    transient_errors=(SoftTimeLimitExceeded,),
    max_retries=1,
    shared=False,
    **TINY_BACKOFF,
)
def over_soft_limit_transient(self) -> None:
    """Sleeps past its soft time limit, which this task declares transient (one retry)."""
    record("attempt", self.request.id, str(self.request.retries))
    time.sleep(30)


@app.task(bind=True, name="tests.limits.rated", rate_limit="2/s", shared=False)
def rated(self) -> None:
    """At most two a second per worker."""
    record("done", self.request.id)


@app.task(bind=True, name="tests.limits.rated_slowly", rate_limit="1/m", shared=False)
def rated_slowly(self) -> None:
    """At most one a minute per worker (until an operator changes it)."""
    record("done", self.request.id)
