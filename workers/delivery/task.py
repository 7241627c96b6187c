"""The task base class: every ``@app.task`` of the platform gets the lifecycle.

In the pool process, around the task body:

1. skip the body if the task id is already recorded as completed (idempotency);
2. run the body;
3. on success, record the id as completed with its return value (unless the
   task did so itself inside :meth:`PlatformTask.transaction`, together with
   its side effects; the value is added after the body returns);
4. on failure, classify the exception and raise the verdict
   (:class:`~workers.delivery.verdict.RetryLater` or :class:`~workers.delivery.verdict.DeadLetterNow`),
   which the worker's main process carries out (:mod:`workers.delivery.request`).
   Celery records the attempt with the task's own exception: RETRY while it
   backs off, FAILURE (with errbacks) once it is dead-lettered
   (:mod:`workers.delivery.results`).

Per-task options (given to ``@app.task(...)``; checked when the task is bound)::

    retry_base, retry_jitter_max, retry_max_delay, max_retries,
    max_unknown_retries, transient_errors, permanent_errors, classify_error,
    idempotent
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from celery import Task, states
from celery.exceptions import Ignore, MaxRetriesExceededError, Reject, Retry
from celery.utils import uuid
from kombu.exceptions import OperationalError

from config.app import platform_config
from workers.delivery.backoff import RetryPolicy
from workers.delivery.classify import ClassifierRules, Decider, classify, import_types
from workers.delivery.delays import check_countdown, check_eta, seconds_until
from workers.delivery.idempotency import (
    AlreadyCompleted,
    Completion,
    CompletionStore,
    encode_result,
    open_store,
)
from workers.delivery.options import check_celery_options
from workers.delivery.publish_retry import pauses, reason, retryable
from workers.delivery.results import record_final_failure
from workers.delivery.verdict import DeadLetterNow, decide, describe
from workers.errors import PublishError

logger = logging.getLogger(__name__)

#: Exceptions that steer Celery itself, and the platform's own verdicts (``self.retry()``
#: raises one): they pass through untouched, never classified as a failure.
CONTROL_EXCEPTIONS = (Ignore, Reject, Retry, DeadLetterNow)


#: Retries of Celery's own tasks declared with ``max_retries=None`` (Celery: retry forever).
UNLIMITED_RETRIES = sys.maxsize


def default_max_retries(task_class: Any, configured: int) -> int:
    """The retries a task without its own ``max_retries`` gets.

    ``PLATFORM_MAX_RETRIES`` for the app's tasks; Celery's own tasks keep
    Celery's meaning of ``None``, retry forever (``celery.chord_unlock`` polls
    a chord's header by retrying until it is ready).
    """
    return UNLIMITED_RETRIES if (task_class.name or "").startswith("celery.") else configured


class PlatformTask(Task):
    """Celery task with classification, broker-held backoff, DLQ and idempotency."""

    #: The worker-side request: settles verdicts in the main process.
    Request = "workers.delivery.request:PlatformRequest"

    #: Seconds before the first retry (None: from settings).
    retry_base: float | None = None
    #: Upper bound of the jitter, in seconds (None: from settings).
    retry_jitter_max: float | None = None
    #: Longest wait between attempts, in seconds (None: from settings).
    retry_max_delay: float | None = None
    #: Retries of a transient failure (None: from settings).
    max_retries: int | None = None
    #: Retries of an unknown failure (None: from settings).
    max_unknown_retries: int | None = None
    #: Extra exception classes treated as transient for this task.
    transient_errors: tuple[type[BaseException] | str, ...] = ()
    #: Extra exception classes treated as permanent for this task.
    permanent_errors: tuple[type[BaseException] | str, ...] = ()
    #: A callable ``exc -> "transient" | "permanent" | "unknown" | None``.
    classify_error: Decider | None = None
    #: Skip the body when this task id already completed (None: from settings).
    idempotent: bool | None = None

    _retry_policy: ClassVar[RetryPolicy]
    _classifier_rules: ClassVar[ClassifierRules]
    _store: ClassVar[CompletionStore | None] = None

    @classmethod
    def on_bound(cls, app: Any) -> None:
        """Check this task's options against the settings when it is declared."""
        settings = platform_config(app).settings

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        try:
            cls._retry_policy = RetryPolicy(
                base=float(pick(cls.retry_base, settings.retry_base)),
                jitter_max=float(pick(cls.retry_jitter_max, settings.retry_jitter_max)),
                max_delay=float(pick(cls.retry_max_delay, settings.retry_max_delay)),
                max_retries=int(pick(cls.max_retries, default_max_retries(cls, settings.max_retries))),
                max_unknown_retries=int(pick(cls.max_unknown_retries, settings.max_unknown_retries)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"task {cls.name or cls.__name__}: {exc}") from None
        # The settings checked these import when they were loaded (config.settings).
        global_rules = ClassifierRules(
            transient=import_types(settings.extra_transient),
            permanent=import_types(settings.extra_permanent),
        )
        if cls.classify_error is not None and not callable(cls.classify_error):
            raise ValueError(f"task {cls.name}: classify_error must be callable")
        cls._classifier_rules = global_rules.merged_with(
            ClassifierRules(
                transient=tuple(cls.transient_errors),
                permanent=tuple(cls.permanent_errors),
                decider=cls.classify_error,
            )
        )
        if cls.idempotent is None:
            cls.idempotent = settings.idempotency
        check_celery_options(cls, settings)

    # -- in the pool process -------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly or self.request.is_eager:
            # A plain call, apply() or task_always_eager: no broker, no lifecycle (Celery's meaning).
            return super().__call__(*args, **kwargs)
        self.request.platform_completed = False
        try:
            return self._run_once(args, kwargs)
        except CONTROL_EXCEPTIONS:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure gets a verdict
            # The body's, or the state store's: either way the attempt did not complete.
            classification = classify(exc, self._classifier_rules)
            failure = describe(exc, classification.error_class)
            verdict = decide(failure, classification, self.request.retries or 0, self._retry_policy, exc=exc)
            if isinstance(verdict, DeadLetterNow):
                record_final_failure(self, exc)
        # Raised outside the except block: the failure travels as text, and the
        # verdict's own traceback is cleared by Celery's tracer.
        raise verdict

    def _run_once(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The body, unless this task id already completed; then the completion mark."""
        task_id = self.request.id
        store = self.completion_store() if self.idempotent else None
        if store is not None:
            completion = store.completion(task_id)
            if completion is not None:
                return self._already_completed(completion)
        try:
            result = self.run(*args, **kwargs)
        except AlreadyCompleted:
            completion = store.completion(task_id) if store is not None else None
            return self._already_completed(completion or Completion(result_known=False))
        if store is not None:
            recorded = encode_result(result)
            if self.request.platform_completed:
                store.record_result(task_id, recorded)
            else:
                store.mark_completed(task_id, self.name, recorded)
        return result

    def _already_completed(self, completion: Completion) -> Any:
        """What a delivery of a completed task id does instead of running the body again.

        It hands on the recorded return value, so Celery stores the same
        result again and a chain or callback that a crash kept from being sent
        is sent now (a duplicate of the next step is absorbed by that step's
        own completion mark). A chord member whose success is already stored
        is not counted twice; a value that was never recorded is not invented.
        """
        task_id = self.request.id
        logger.info("task %s[%s] already completed; not running it again", self.name, task_id)
        if self.request.chord and self.AsyncResult(task_id).state == states.SUCCESS:
            raise Ignore()
        if not completion.result_known:
            if self.request.callbacks or self.request.chain:
                logger.error(
                    "task %s[%s] completed before its return value was recorded; "
                    "the steps linked after it are not sent again",
                    self.name,
                    task_id,
                )
            raise Ignore()
        return completion.result

    def retry(  # type: ignore[override]
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> None:
        """Retry through the broker (never in worker memory); counts as a transient failure.

        Without ``countdown`` or ``eta`` the wait is the backoff schedule (the
        queue's retry ladder); with one, the task's own wait, held by the
        broker's delay levels.

        Raises:
            ValueError: ``args`` or ``kwargs`` given (the same message is retried).
            DelayError: a countdown or eta the broker can't hold.
        """
        if self.request.is_eager:  # apply() / task_always_eager: Celery's own in-process retry
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        if args is not None or kwargs is not None:
            raise ValueError("retry() re-runs the same message; args and kwargs can't change")
        from workers.delivery.classify import Classification, ErrorClass

        if eta is not None:
            countdown = max(seconds_until(check_eta(eta)), 0.0)
        if countdown is not None:
            countdown = check_countdown(countdown)
        policy = self._retry_policy
        if max_retries is not None:
            policy = RetryPolicy(**{**policy.__dict__, "max_retries": max_retries})
        retries = self.request.retries or 0
        if exc is None and retries >= policy.retries_allowed(ErrorClass.TRANSIENT):
            # Celery's meaning: retries used up without an exception to re-raise.
            exc = MaxRetriesExceededError(f"Can't retry {self.name}[{self.request.id}]: max retries exceeded")
        reason = exc or RuntimeError("retry requested by the task")
        failure = describe(reason, ErrorClass.TRANSIENT)
        verdict = decide(
            failure, Classification(ErrorClass.TRANSIENT), retries, policy, countdown, exc=reason
        )
        if isinstance(verdict, DeadLetterNow):
            record_final_failure(self, reason)
        raise verdict

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A transaction on the state store that also records this task as completed.

        Side effects written through the yielded connection commit atomically
        with the completion mark, so a redelivery after a crash never repeats
        them::

            with self.transaction() as db:
                db.execute("insert into charges (order_id) values (?)", (order_id,))
        """
        store = self.completion_store()
        with store.transaction() as connection:
            yield connection
            if not store.mark_completed_in(connection, self.request.id, self.name):
                # A copy of this message ran at the same time and committed first: the
                # rollback undoes this run's side effects (they exist once, its).
                raise AlreadyCompleted(self.request.id)
        self.request.platform_completed = True

    @classmethod
    def completion_store(cls) -> CompletionStore:
        """This process's idempotency store (opened on first use)."""
        return open_store(platform_config(cls.app).settings.state_url)

    # -- in the publishing process ---------------------------------------------

    def apply_many(
        self, calls: Any, queue: str | None = None, countdown: float | None = None, eta: Any = None
    ) -> list[str]:
        """Enqueue one message per ``(args, kwargs)``, confirmed together.

        Much faster than calling :meth:`apply_async` in a loop; see
        :func:`workers.delivery.batch.enqueue_many`. ``countdown`` / ``eta``
        delay every message of the batch, as for :meth:`apply_async`.
        """
        from workers.delivery.batch import enqueue_many

        return enqueue_many(self, calls, queue=queue, countdown=countdown, eta=eta)

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: Any = None, **options: Any) -> Any:
        """Publish with a confirm; raise :class:`PublishError` if it can't be confirmed.

        ``countdown`` and ``eta`` wait in the broker's delay levels
        (:mod:`workers.delivery.publishing`), never in a worker.
        """
        settings = platform_config(self.app).settings
        options.setdefault("mandatory", True)
        timeout = options.setdefault("confirm_timeout", settings.publish_timeout)
        options.setdefault("timeout", settings.publish_timeout)
        # Every copy sent carries the same id: a copy that reached a queue before a
        # later one was confirmed is absorbed by idempotency.
        task_id = task_id or uuid()
        deadline = time.monotonic() + timeout
        waits = pauses()
        while True:
            try:
                return super().apply_async(args, kwargs, task_id=task_id, **options)
            except (OperationalError, OSError, TimeoutError) as exc:
                pause = next(waits)
                left = deadline - time.monotonic() - pause
                if not retryable(exc) or left <= 0:
                    raise PublishError(
                        f"could not publish {self.name} to the broker at "
                        f"{self.app.connection_for_write().as_uri()}: {reason(exc)}"
                    ) from exc
                logger.info("publishing %s[%s] again in %.1fs: %r", self.name, task_id, pause, exc)
                time.sleep(pause)
                options["confirm_timeout"] = options["timeout"] = left  # the whole stays within timeout
            except Exception as exc:
                if type(exc).__module__.startswith("amqp"):
                    raise PublishError(f"broker refused {self.name}: {exc}") from exc
                raise
