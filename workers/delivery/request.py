"""The worker-side request: carries a verdict out in the main process.

Celery calls :meth:`PlatformRequest.on_failure` in the worker's main process
with what the pool process raised. Verdicts (retry later, dead letter) are
settled by :mod:`workers.delivery.lifecycle`: republished with a confirm, then acked.
A failure that reaches the main process without a verdict (a hard time limit
kills the pool process before it can decide; anything raised outside the task
body) is decided here with the task's own classifier rules, never acked away,
and recorded as Celery would (:mod:`workers.delivery.results`).
A pool process that died is left to Celery: the message is requeued, and
RabbitMQ counts the delivery.

A task whose ``expires`` passed before it could run (on receipt, or while it
waited in a delay queue or for a pool slot) goes to its DLQ as ``expired``;
stock Celery acks such a message and drops it. If settling itself fails, the
delivery is given back to the broker, whose delivery count then bounds how
often that can happen.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from celery.exceptions import Ignore, Reject, Retry, Terminated, WorkerLostError
from celery.signals import task_revoked
from celery.worker.request import Request
from celery.worker.state import task_ready

from workers.delivery.classify import ErrorClass, classify
from workers.delivery.headers import Failure
from workers.delivery.lifecycle import lifecycle_of
from workers.delivery.results import record_decided_here
from workers.delivery.verdict import DeadLetterNow, RetryLater, decide, describe

logger = logging.getLogger(__name__)

#: Outcomes Celery itself handles right: a lost pool process is requeued (and
#: counted by the quorum queue); control exceptions do what they say.
CELERY_HANDLED = (
    WorkerLostError,
    Terminated,
    Ignore,
    Reject,
    Retry,
    SystemExit,
    KeyboardInterrupt,
    MemoryError,
)


class PlatformRequest(Request):
    """A Celery request whose failures go through the platform lifecycle."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        try:
            return self._settle_failure(exc_info, send_failed_event, return_ok)
        except MemoryError:
            raise  # Celery's own handling of a worker out of memory
        except Exception:  # settling broke: never leave the delivery held
            logger.exception("could not settle task %s[%s]; giving the delivery back", self.name, self.id)
            self._give_back()
            return None

    def _settle_failure(self, exc_info: Any, send_failed_event: bool, return_ok: bool) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if not isinstance(exc, (RetryLater, DeadLetterNow, *CELERY_HANDLED)):
            original, exc = exc, self._decide_here(exc_info, exc)
            record_decided_here(self, original, exc_info, exc)
        if not isinstance(exc, (RetryLater, DeadLetterNow)):
            return super().on_failure(exc_info, send_failed_event, return_ok)

        lifecycle = lifecycle_of(self._app)
        if isinstance(exc, RetryLater):
            verdict = exc

            def acknowledge_retry() -> None:
                task_ready(self)
                self.acknowledge()
                self.send_event("task-retried", exception=str(verdict), traceback=verdict.failure.traceback)

            lifecycle.retry(
                self._message,
                verdict.failure,
                verdict.delay,
                verdict.retry_number,
                ack=acknowledge_retry,
                requeue=self._give_back,
                scheduled=verdict.scheduled,
            )
            return None

        failure = exc.failure

        def acknowledge_failure() -> None:
            # The failure is recorded (results.py); ack as acks_on_failure does, tell Flower.
            task_ready(self)
            self.acknowledge()
            if send_failed_event:
                exception = f"{failure.error_type}({failure.error_message!r})"
                self.send_event("task-failed", exception=exception, traceback=failure.traceback)

        lifecycle.dead_letter(
            self._message, failure, exc.retries, ack=acknowledge_failure, requeue=self._give_back
        )
        return None

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """A hard time limit was settled by :meth:`on_failure`, which billiard calls first.

        Celery's own handler would record a second failure (errbacks again)
        and ack the message a second time; a soft limit is only a warning.
        """
        if soft:
            return super().on_timeout(soft, timeout)
        logger.error("hard time limit (%ss) exceeded for %s[%s]", timeout, self.name, self.id)
        return None

    def revoked(self) -> bool:
        """Whether to skip this task; an expired one is dead-lettered as ``expired`` first.

        Celery asks on receipt and again before the pool runs the task.
        """
        expires = self._expires
        if (
            not getattr(self, "_already_revoked", False)
            and expires is not None
            and datetime.now(expires.tzinfo) > expires
        ):
            self._already_revoked = True
            self._dead_letter_expired(expires)
            return True
        return bool(super().revoked())

    def _dead_letter_expired(self, expires: datetime) -> None:
        failure = Failure(
            ErrorClass.EXPIRED.value,
            "TaskExpired",
            f"its expiry time {expires.isoformat()} passed before it could run",
        )

        def acknowledge_expired() -> None:
            # What Celery does for an expired task, with the ack after the dead letter's confirm.
            task_ready(self)
            self.send_event("task-revoked", terminated=False, signum=None, expired=True)
            self.task.backend.mark_as_revoked(
                self.id, "expired", request=self._context, store_result=self.store_errors
            )
            self.acknowledge()
            task_revoked.send(
                sender=self.task, request=self._context, terminated=False, signum=None, expired=True
            )

        retries = int(self.request_dict.get("retries") or 0)
        lifecycle_of(self._app).dead_letter(
            self._message, failure, retries, ack=acknowledge_expired, requeue=self._give_back
        )

    def _decide_here(self, exc_info: Any, exc: BaseException) -> RetryLater | DeadLetterNow:
        """The verdict on a failure the task body did not classify (its own rules decide)."""
        classification = classify(exc, self.task._classifier_rules)
        described = describe(exc, classification.error_class)
        failure = Failure(
            described.error_class, described.error_type, described.error_message, exc_info.traceback or ""
        )
        retries = int(self.request_dict.get("retries") or 0)
        return decide(failure, classification, retries, self.task._retry_policy)

    def _give_back(self) -> None:
        """The republish was not confirmed: return the delivery to the broker."""
        task_ready(self)
        self.reject(requeue=True)
