"""The worker-side request: carries a verdict out in the main process.

Celery calls :meth:`PlatformRequest.on_failure` in the worker's main process
with what the pool process raised. Verdicts (retry later, dead letter) are
settled by :mod:`workers.delivery.lifecycle`: republished with a confirm, then acked.
A failure that reaches the main process without a verdict (a hard time limit
kills the pool process before it can decide; anything raised outside the task
body) is decided here with the task's own classifier rules, never acked away.
A pool process that died is left to Celery: the message is requeued, and
RabbitMQ counts the delivery.
"""

from __future__ import annotations

from typing import Any

from billiard.einfo import ExceptionWithTraceback
from celery.exceptions import Ignore, Reject, Retry, Terminated, WorkerLostError
from celery.worker.request import Request
from celery.worker.state import task_ready

from workers.delivery.classify import classify
from workers.delivery.headers import Failure
from workers.delivery.lifecycle import lifecycle_of
from workers.delivery.verdict import DeadLetterNow, RetryLater, decide, describe

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
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if not isinstance(exc, (*CELERY_HANDLED, RetryLater, DeadLetterNow)):
            exc = self._decide_here(exc_info, exc)
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
            )
            return None

        def acknowledge_failure() -> None:
            # Celery acks (acks_late with acks_on_failure) and sends task-failed.
            Request.on_failure(self, exc_info, send_failed_event, return_ok)

        lifecycle.dead_letter(
            self._message, exc.failure, exc.retries, ack=acknowledge_failure, requeue=self._give_back
        )
        return None

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
