"""The verdict on a failed attempt: retry later, or dead-letter now.

A task's exception is classified where it happened (the pool process, which
has the real exception object); the verdict travels to the worker's main
process as one of the two exceptions below, which pickle safely whatever the
original exception was. :mod:`workers.delivery.lifecycle` carries the verdict out.

``RetryLater`` is a Celery ``Retry``: Celery's tracer records the attempt as
RETRY (result backend, ``on_retry``, the ``task_retry`` signal) with the task's
own exception (:attr:`RetryLater.exc`, kept in the pool process only). A
``DeadLetterNow`` is a Celery ``Ignore`` to the tracer: the task base has
already recorded the failure the way Celery does (FAILURE with the task's own
exception, errbacks, ``on_failure``, the ``task_failure`` signal), so the
tracer must not record it a second time as a failure of the verdict itself.
"""

from __future__ import annotations

import traceback as traceback_module

from celery import signals
from celery.exceptions import Ignore, Retry

from workers.delivery.backoff import RetryPolicy, backoff_delay
from workers.delivery.classify import Classification, ErrorClass
from workers.delivery.headers import Failure


class RetryLater(Retry):
    """Republish the message to its delay queue; it comes back after ``delay``."""

    def __init__(
        self,
        failure: Failure,
        delay: float,
        retry_number: int,
        scheduled: bool = False,
        exc: BaseException | None = None,
    ) -> None:
        self.failure = failure
        self.delay = delay
        self.retry_number = retry_number
        #: The task chose the wait (``self.retry(countdown=...)``): it waits in the delay levels.
        self.scheduled = scheduled
        super().__init__(
            message=(
                f"retry {retry_number} in {delay:.3f}s "
                f"({failure.error_class}: {failure.error_type}: {failure.error_message})"
            ),
            when=delay,
        )
        # Celery's Retry puts itself in its own args: a reference cycle that
        # keeps every failed attempt's frames alive until a full collection.
        self.args = (self.message, None, delay)
        #: The task's own exception, which Celery records as the RETRY's result
        #: (pool process only: it is not pickled to the main process).
        self.exc = exc

    def __reduce__(self):
        return (type(self), (self.failure, self.delay, self.retry_number, self.scheduled))


class DeadLetterNow(Ignore):
    """Republish the message to its dead-letter queue with the failure's metadata."""

    def __init__(self, failure: Failure, retries: int) -> None:
        self.failure = failure
        self.retries = retries
        super().__init__(
            f"dead-lettered after {retries} retries "
            f"({failure.error_class}: {failure.error_type}: {failure.error_message})"
        )

    def __reduce__(self):
        return (type(self), (self.failure, self.retries))


def describe(exc: BaseException, error_class: ErrorClass | str) -> Failure:
    """A :class:`Failure` for ``exc`` with its formatted traceback."""
    text = "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
    return Failure(
        error_class=ErrorClass(error_class).value,
        error_type=f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
        error_message=str(exc),
        traceback=text,
    )


def decide(
    failure: Failure,
    classification: Classification,
    retries_done: int,
    policy: RetryPolicy,
    countdown: float | None = None,
    exc: BaseException | None = None,
) -> RetryLater | DeadLetterNow:
    """Retry with backoff while the class allows it, else dead-letter.

    Args:
        failure: the error, described.
        classification: its class and any Retry-After.
        retries_done: retries the message already had.
        policy: the task's schedule.
        countdown: an explicit wait asked for by the task (``self.retry``);
            it is honoured as given (the broker's delay levels hold it), not
            capped by the backoff's maximum.
        exc: the exception itself, recorded by Celery as a retry's reason.
    """
    if retries_done >= policy.retries_allowed(classification.error_class):
        return DeadLetterNow(failure, retries_done)
    if countdown is not None:
        return RetryLater(failure, max(countdown, 0.0), retries_done + 1, scheduled=True, exc=exc)
    delay = backoff_delay(retries_done, policy, classification.retry_after)
    return RetryLater(failure, delay, retries_done + 1, exc=exc)


# -- releasing failed attempts (Celery signals) --------------------------------
# Celery's tracer keeps the raised exception in its own frame's locals while the
# exception's traceback holds that frame: one reference cycle per failed attempt
# (Celery clears frames of failures it can, but the tracer's frame is still
# running then, and for retries it clears a wrapper, not the exception). Left
# to the cyclic collector, a retry storm grew each pool process by about 100 MB
# before a full collection freed it. A verdict already carries its traceback as
# text, so once Celery has recorded the attempt its frames can go.


@signals.task_retry.connect(weak=False)
def release_retried_attempt(reason: BaseException | None = None, **_: object) -> None:
    """Break the cycle of a ``RetryLater`` once Celery has recorded the retry."""
    if isinstance(reason, RetryLater):
        reason.__traceback__ = None
        reason.exc = None


@signals.task_failure.connect(weak=False)
def release_dead_lettered_attempt(exception: BaseException | None = None, **_: object) -> None:
    """Break the cycle of a ``DeadLetterNow`` once Celery has recorded the failure."""
    if isinstance(exception, DeadLetterNow):
        exception.__traceback__ = None
