"""What every chaos scenario does around its fault: publish known ids with confirms, wait, read the ledger."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.chaos_ledger import side_effects
from tests.support.ledger import events
from tests.support.wait import wait_for
from workers.errors import PublishError

#: The task module chaos workers load.
CHAOS_TASKS = "tests.support.chaos_tasks"
#: The task's name.
WORK = "chaos.work"
#: Fails transiently on its first ``fails`` attempts, then succeeds (tests/support/chaos_tasks.py).
FLAKY = "chaos.flaky"
#: Fails permanently: dead-lettered at once as ``permanent``.
REJECT = "chaos.reject"


def chaos_task(app: Any, name: str = WORK) -> Any:
    """Chaos task ``name`` on a publishing app (a stub: only the worker runs the body)."""

    @app.task(name=name, shared=False)
    def stub(*args: Any) -> None: ...

    return stub


@dataclass
class Published:
    """What the publisher saw: ids the broker confirmed, ids it refused, and how long each call took."""

    confirmed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def one(
        self, task: Any, seconds: float = 0.0, args: tuple[Any, ...] | None = None, **options: Any
    ) -> bool:
        """Publish one task with a known id (``delay()``); True if confirmed.

        ``args`` replaces ``(seconds,)``; ``options`` go to ``apply_async`` (``countdown``...).
        """
        task_id = str(uuid.uuid4())
        began = time.monotonic()
        try:
            task.apply_async(
                args=(seconds,) if args is None else args, task_id=task_id, queue="orders", **options
            )
        except PublishError:
            self.refused.append(task_id)
            return False
        finally:
            self.durations.append(time.monotonic() - began)
        self.confirmed.append(task_id)
        return True

    def many(self, task: Any, count: int, seconds: float = 0.0, **options: Any) -> list[str]:
        """Publish ``count`` tasks confirmed together (``apply_many``; ``options``: ``countdown``...)."""
        ids = task.apply_many([((seconds,), {})] * count, queue="orders", **options)
        self.confirmed.extend(ids)
        return ids

    def merge(self, *others: Published) -> None:
        """Add what other publishers saw (phases of one scenario)."""
        for other in others:
            self.confirmed += other.confirmed
            self.refused += other.refused
            self.durations += other.durations


def done_after(ledger: Path, moment: float) -> list[float]:
    """Times (unix) of the tasks completed after ``moment``, earliest first."""
    return sorted(entry.at for entry in events(ledger, "done") if entry.at > moment)


def first_attempts(ledger: Path) -> dict[str, float]:
    """Task id -> time (unix) of its first attempt."""
    first: dict[str, float] = {}
    for entry in events(ledger, "attempt"):
        first[entry.task_id] = min(entry.at, first.get(entry.task_id, entry.at))
    return first


def done_count(ledger: Path) -> int:
    return len({entry.task_id for entry in events(ledger, "done")})


def wait_settled(
    ids: list[str],
    state_db: Path,
    dead_letters: Callable[[], int],
    timeout: float,
    what: str = "the work",
    where: Callable[[], object] | None = None,
) -> None:
    """Wait until every id in ``ids`` has committed its side effect or been dead-lettered.

    ``where`` says where the rest waits, for the message of a timeout (e.g. queue depths).
    """
    wanted = set(ids)

    def settled() -> bool:
        return len(wanted & set(side_effects(state_db))) + dead_letters() >= len(wanted)

    wait_for(
        settled,
        timeout=timeout,
        interval=0.5,
        message=lambda: (
            f"{what} to settle: {len(wanted & set(side_effects(state_db)))} of {len(wanted)} done, "
            f"{dead_letters()} dead-lettered{f'; waiting: {where()}' if where else ''}"
        ),
    )
