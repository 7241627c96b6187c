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

Messages refused on receipt
---------------------------

A refused message (poison, undecodable, disallowed, unknown task: see
:mod:`workers.delivery.consumer`) never reaches Celery's request machinery, so
without this its result would say nothing (or, for a poison message, STARTED
forever: the attempts that killed their pool process got that far). Once its
dead letter is confirmed, the consumer calls :func:`record_refusal`, which does
what stock Celery does for an unknown task (``Consumer.on_unknown_task``):
store FAILURE in the result backend, if one is configured, and send
``task-failed`` to Flower, if events are on. The exception stored names the
refusal:

=================  ==============================================================
``x-error-class``  exception a client's ``.get()`` raises
=================  ==============================================================
``poison``         :class:`celery.exceptions.WorkerLostError` (the worker process died)
``unknown-task``   :class:`celery.exceptions.NotRegistered` (the task's name)
``disallowed``     :class:`kombu.exceptions.ContentDisallowed`, or
                   :class:`workers.delivery.delays.DelayError` for an eta too far ahead
other              :class:`kombu.exceptions.DecodeError` (the message can't be read)
=================  ==============================================================

Chords and errbacks are not called (as in stock Celery for an unknown task).
Backend or event trouble is logged and never raised: the message is already
safe in its DLQ.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery import signals, states
from celery.app.trace import TraceInfo
from celery.backends.base import DisabledBackend
from celery.exceptions import NotRegistered, WorkerLostError
from celery.utils.objects import Bunch
from kombu.exceptions import ContentDisallowed, DecodeError

from workers.delivery.classify import ErrorClass
from workers.delivery.delays import DelayError
from workers.delivery.headers import REPLAY_COUNT
from workers.delivery.verdict import DeadLetterNow, RetryLater

logger = logging.getLogger(__name__)


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


def refusal_exception(error_class: ErrorClass, error_type: str, text: str, task: str) -> Exception:
    """The exception a client sees for a message refused as ``error_class`` (see the module doc)."""
    if error_class is ErrorClass.POISON:
        return WorkerLostError(text)
    if error_class is ErrorClass.UNKNOWN_TASK:
        return NotRegistered(task)
    if error_class is ErrorClass.DISALLOWED:
        return DelayError(text) if error_type == "DelayTooLong" else ContentDisallowed(text)
    return DecodeError(f"{error_type}: {text}")


def record_refusal(app: Any, message: Any, exc: Exception, event_dispatcher: Any = None) -> None:
    """Store FAILURE with ``exc`` for a refused message and send ``task-failed``; never raises.

    Nothing is stored for a message without a task id, with
    ``ignore_result``, or when the app has no result backend.
    """
    headers = message.headers if isinstance(message.headers, Mapping) else {}
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id:
        return
    if headers.get("ignore_result") is not True:
        _store_failure(app, task_id, headers, message, exc)
    if event_dispatcher is not None:
        try:
            event_dispatcher.send("task-failed", uuid=task_id, exception=repr(exc))
        except Exception:  # an event is never worth the consumer
            logger.exception("could not send task-failed for refused task %s", task_id)


def _store_failure(app: Any, task_id: str, headers: Mapping[str, Any], message: Any, exc: Exception) -> None:
    try:
        backend = app.backend
        if isinstance(backend, DisabledBackend):
            return
        properties = message.properties if isinstance(message.properties, Mapping) else {}
        # The request stock Celery builds for an unknown task (the rpc backend
        # replies to reply_to with the correlation id).
        request = Bunch(
            name=headers.get("task"),
            chord=None,
            root_id=headers.get("root_id"),
            parent_id=headers.get("parent_id"),
            correlation_id=properties.get("correlation_id"),
            reply_to=properties.get("reply_to"),
            errbacks=None,
        )
        backend.mark_as_failure(task_id, exc, request=request)
    except Exception:  # the dead letter is confirmed; a result is not worth the consumer
        logger.exception("could not store the FAILURE result of refused task %s", task_id)
