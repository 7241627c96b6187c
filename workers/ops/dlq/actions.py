"""The operator actions that change a DLQ, each done and audited in one call.

The CLI (``celery -A config dlq replay|purge``) and Flower's Replay and Purge
buttons both call these, so every replay and purge is recorded the same way in
``<run dir>/dlq-audit.jsonl`` (:func:`workers.ops.dlq.records.audit`), whoever
clicked or typed. A dry run changes nothing and is not recorded; an action
that raises (an unknown queue, a lost connection) is not recorded either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from config.topology import dead_letter_queue
from workers.ops.dlq.browsing import purge
from workers.ops.dlq.filters import Filter
from workers.ops.dlq.records import audit
from workers.ops.dlq.refailures import MIN_REFAIL_SAMPLE
from workers.ops.dlq.replay_steps import ReplayProgress, ReplayResult
from workers.ops.dlq.replaying import replay

if TYPE_CHECKING:
    from kombu import Connection


def replay_and_audit(
    connection: Connection,
    queue: str,
    selection: Filter | None = None,
    *,
    who: str,
    run_dir: str | Path,
    dry_run: bool = False,
    rate: float | None = None,
    max_refail_ratio: float = 0.5,
    min_refail_sample: int = MIN_REFAIL_SAMPLE,
    confirm_timeout: float = 5.0,
    progress: Callable[[ReplayProgress], None] | None = None,
) -> ReplayResult:
    """:func:`~workers.ops.dlq.replaying.replay`, then (unless a dry run) its audit record.

    Args:
        connection: a kombu connection to the broker.
        queue: the work queue (its DLQ is ``<queue>.dlq``).
        selection: which letters; all by default.
        who: the operator, as the audit record names them.
        run_dir: the run folder holding the audit file.
        dry_run, rate, max_refail_ratio, min_refail_sample, confirm_timeout, progress:
            as for :func:`~workers.ops.dlq.replaying.replay`.

    Returns:
        What the replay did.

    Raises:
        UnknownQueue: the DLQ or the original queue does not exist (nothing is recorded).
    """
    selection = selection or Filter()
    result = replay(
        connection,
        queue,
        selection,
        dry_run=dry_run,
        rate=rate,
        max_refail_ratio=max_refail_ratio,
        min_refail_sample=min_refail_sample,
        confirm_timeout=confirm_timeout,
        progress=progress,
    )
    if not dry_run:
        audit(
            run_dir,
            "replay",
            dead_letter_queue(queue),
            who,
            filters=selection.describe(),
            rate=rate,
            replayed=result.replayed,
            refailed=result.refailed,
            stopped=result.stopped,
            task_ids=result.task_ids,
        )
    return result


def purge_and_audit(connection: Connection, queue: str, *, who: str, run_dir: str | Path) -> int:
    """Delete every dead letter of ``queue``, then record it.

    Returns:
        How many messages were deleted.

    Raises:
        UnknownQueue: the DLQ does not exist (nothing is recorded).
    """
    deleted = purge(connection, queue)
    audit(run_dir, "purge", dead_letter_queue(queue), who, deleted=deleted)
    return deleted
