"""How a service's event handler joins the order saga.

::

    @saga_handler("tasks.saga.inventory.reserve", service="inventory")
    def reserve(step: SagaStep, event: Event[PaymentSucceeded]) -> dict[str, object]:
        if not step.acting:            # late (the saga moved on) or a duplicate
            return {"applied": False}
        ...                            # the service's own tables, on step.connection
        step.emit(prepare("inventory.reserved", {...}))

The handler is an ordinary platform task (late ack, backoff, DLQ, idempotency
by ``<service>:<event id>``, Flower). Its body runs inside one transaction of
the state store that holds the service's change, the saga's move and log row,
the outbox rows and the handler's completion mark; the outbox rows are relayed
after the commit. The saga id comes from the event's ``sagaid`` attribute; an
event without one is not part of a saga and is ignored (logged), so other
producers' ``order.created`` events pass by the saga's handlers harmlessly.

A handler declared with ``compensation=True`` whose failure is final (retries
exhausted, or permanent) is dead-lettered as usual and moves its saga to
``compensation_failed`` (in :meth:`CompensationTask.on_failure`, in the pool
process, before the worker moves the message to the ``.dlq``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from config import app
from tasks.events import prepare
from tasks.events.handlers import Event, load_event
from tasks.saga.definition import ORDER_SAGA
from workers.delivery.task import PlatformTask
from workers.events.publisher import OutgoingEvent
from workers.sagas.outbox import SAGA_ID_ATTRIBUTE
from workers.sagas.step import SagaStep, record_compensation_failure, saga_step

logger = logging.getLogger(__name__)

#: CloudEvents ``source`` of each service's facts.
SOURCES = {"orders": "/shop/orders", "payments": "/shop/payments", "inventory": "/shop/inventory"}


def saga_id_of(event: Event[Any]) -> str | None:
    """The saga id an event carries (None: it is not part of a saga)."""
    return event.attributes.get(SAGA_ID_ATTRIBUTE) or None


def fact(service: str, event_type: str, data: dict[str, Any], on: Celery = app) -> OutgoingEvent:
    """An event of ``service`` ready for the outbox (checked against the catalog)."""
    return prepare(event_type, data, app=on, source=SOURCES[service])


class CompensationTask(PlatformTask):
    """A saga handler that undoes a step: failing for good moves its saga to ``compensation_failed``."""

    #: The service that runs this compensation (set by :func:`saga_handler`).
    service: str = ""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        envelope = (kwargs or {}).get("event") or {}
        saga_id = str(envelope.get(SAGA_ID_ATTRIBUTE) or "")
        if not saga_id:
            return
        error = f"{type(exc).__name__}: {exc}"
        try:
            record_compensation_failure(
                self.app,
                self.completion_store(),
                ORDER_SAGA,
                self.service,
                saga_id,
                str(envelope.get("id")),
                error,
            )
        except Exception:  # the dead letter still says why; the log line says this
            logger.exception("saga %s: could not record its failed compensation", saga_id)


def saga_handler(
    name: str, service: str, compensation: bool = False, **options: Any
) -> Callable[[Callable[[SagaStep, Event[Any]], Any]], Task]:
    """Declare ``function(step, event)`` as the saga handler task ``name`` of ``service``.

    Args:
        name: the task name the subscriptions file (``config/subscriptions.toml``) names.
        service: the service that owns the handler (written in the saga log).
        compensation: a final failure moves the saga to ``compensation_failed``.
        options: platform task options (``max_retries``, ``retry_base``...).
    """

    def declare(function: Callable[[SagaStep, Event[Any]], Any]) -> Task:
        def handle(self: Task, event: dict[str, Any]) -> Any:
            received = load_event(event)
            saga_id = saga_id_of(received)
            if saga_id is None:  # a fact from outside any saga (an order placed by other means)
                logger.info(
                    "%s %s carries no saga id; not part of a saga, ignored", received.type, received.id
                )
                return {"saga_id": None, "applied": False}
            with saga_step(self, ORDER_SAGA, service, saga_id, received.id, received.type) as step:
                return function(step, received)

        handle.__name__ = function.__name__
        handle.__qualname__ = function.__qualname__
        handle.__doc__ = function.__doc__
        handle.__module__ = function.__module__
        extra: dict[str, Any] = {"base": CompensationTask, "service": service} if compensation else {}
        return app.task(name=name, bind=True, **extra, **options)(handle)  # type: ignore[no-any-return]

    return declare
