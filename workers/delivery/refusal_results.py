"""What a Celery client hears of a message the worker refused on receipt: a FAILURE result and an event.

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

from celery.backends.base import DisabledBackend
from celery.exceptions import NotRegistered, WorkerLostError
from celery.utils.objects import Bunch
from kombu.exceptions import ContentDisallowed, DecodeError

from workers.delivery.classify import ErrorClass
from workers.delivery.delays import DelayError

logger = logging.getLogger(__name__)


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
