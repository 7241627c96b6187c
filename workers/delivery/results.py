"""Celery's own record of a task's outcome, kept true to the lifecycle.

A Celery client acts on what the result backend, the errbacks and the
``task_failure`` signal say. The platform's verdicts must not change what they
say: while a task backs off it is RETRY with its own exception as the reason;
once it is dead-lettered it is FAILURE with its own exception, and its
errbacks run once. A message replayed from a DLQ that fails again is recorded
as FAILURE again, but its errbacks, which ran when it was first dead-lettered,
do not run a second time.

Failures decided in the pool process are recorded there, by Celery's own
tracer code; failures decided in the main process (a hard time limit killed
the pool process, or something failed outside the task body) are recorded by
:func:`record_decided_here`, as Celery's request does for a lost worker.
"""

from __future__ import annotations

from typing import Any

from celery import signals, states
from celery.app.trace import TraceInfo

from workers.delivery.headers import REPLAY_COUNT
from workers.delivery.verdict import DeadLetterNow, RetryLater


def is_replayed(request: Any) -> bool:
    """Whether the delivery behind Celery's ``request`` context came out of a DLQ replay."""
    return bool(getattr(request, REPLAY_COUNT, None))


def record_final_failure(task: Any, exc: BaseException) -> None:
    """Record, in the pool process, that ``task`` failed for good with ``exc``.

    Exactly what Celery's tracer does for a failed task (result backend,
    chord and chain bookkeeping, errbacks, ``on_failure``, the
    ``task_failure`` signal, the error log line), with the task's own
    exception instead of the platform's verdict.
    """
    if exc.__traceback__ is None:  # never raised (``self.retry(exc=Error(...))``): Celery needs a traceback
        try:
            raise exc
        except BaseException:  # noqa: BLE001 - it is the exception just raised
            return record_final_failure(task, exc)
    request = task.request
    TraceInfo(states.FAILURE, exc).handle_error_state(
        task, request, eager=False, call_errbacks=not is_replayed(request)
    )
    return None


def record_decided_here(
    request: Any, exc: BaseException, exc_info: Any, verdict: RetryLater | DeadLetterNow
) -> None:
    """Record, in the worker's main process, a verdict on ``exc`` the pool process never reached."""
    task = request.task
    context = request._context
    if isinstance(verdict, RetryLater):
        if request.store_errors:
            task.backend.mark_as_retry(request.id, exc, exc_info.traceback, request=context)
        return
    task.backend.mark_as_failure(
        request.id,
        exc,
        exc_info.traceback,
        request=context,
        store_result=request.store_errors,
        call_errbacks=not is_replayed(context),
    )
    task.request_stack.push(context)
    try:
        signals.task_failure.send(
            sender=task,
            task_id=request.id,
            exception=exc,
            args=request.args,
            kwargs=request.kwargs,
            traceback=exc_info.traceback,
            einfo=exc_info,
        )
    finally:
        task.request_stack.pop()
