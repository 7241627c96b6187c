"""Declare event handlers: Celery tasks that receive a validated event.

::

    @event_handler("tasks.events.email.send_order_confirmation")
    def send_order_confirmation(event: Event[OrderCreated]) -> None:
        mail(event.data.customer_email, f"order {event.data.order_id}")

A handler is an ordinary platform task (late ack, classification, backoff,
DLQ, idempotency by ``<service>:<event id>``, visible in Flower); which events
reach it is configuration (:mod:`config.subscriptions`), not code. Before the
body runs, the event's data is loaded (from the claim-check store if it was
too big for a message) and validated against the catalog's model for its type
and version; an event that fails is a permanent failure
(:class:`EventSchemaError`), dead-lettered at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from celery import Task
from pydantic import ValidationError

from config import app
from config.app import platform_config
from tasks.events.catalog import REGISTRY
from workers.errors import PermanentError
from workers.events.blobs import load_claimed, open_blob_store
from workers.events.envelope import CLAIM_CHECK_ATTRIBUTE, EventTypeError, parse_event_type
from workers.events.schemas import SchemaRegistry

T = TypeVar("T")


class EventSchemaError(PermanentError):
    """An event's data does not match the schema of its type and version."""


@dataclass(frozen=True)
class Event(Generic[T]):
    """A received event: its CloudEvents attributes and its validated data."""

    id: str
    type: str
    source: str
    time: str | None
    version: int
    data: T
    #: Every CloudEvents attribute as received (including extensions).
    attributes: Mapping[str, str] = field(default_factory=dict)


def load_event(envelope: Mapping[str, Any], registry: SchemaRegistry = REGISTRY) -> Event[Any]:
    """The :class:`Event` for a received envelope (as the worker's translation passes it).

    Raises:
        EventSchemaError: the type is malformed or unknown, the data is not
            JSON, or it does not validate against the schema.
        BlobError: a claim-checked payload can't be loaded.
    """
    event_type = str(envelope.get("type", ""))
    try:
        version = parse_event_type(event_type).version
    except EventTypeError as exc:
        raise EventSchemaError(str(exc)) from None
    where = f"{event_type} (schema version {version}) event {envelope.get('id')}"
    if envelope.get("dataerror"):
        raise EventSchemaError(f"{where}: {envelope['dataerror']}")
    data = envelope.get("data")
    reference = envelope.get(CLAIM_CHECK_ATTRIBUTE)
    if reference:
        raw = load_claimed(open_blob_store(platform_config(app).settings.blob_dir), str(reference), data)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise EventSchemaError(f"{where}: claim-checked data is not valid JSON: {exc}") from None
    model = registry.schema(event_type)
    if model is None:
        raise EventSchemaError(f"{where}: no schema is registered for this type and version")
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(data)'}: {error['msg']}" for error in exc.errors()
        )
        raise EventSchemaError(f"{where} does not match its schema: {problems}") from None
    attributes = {k: str(v) for k, v in envelope.items() if k not in ("data", "dataerror")}
    return Event(
        id=str(envelope.get("id")),
        type=event_type,
        source=str(envelope.get("source", "")),
        time=envelope.get("time"),
        version=version,
        data=validated,
        attributes=attributes,
    )


def event_handler(name: str, **options: Any) -> Callable[[Callable[[Event[Any]], Any]], Task]:
    """Declare ``function(event)`` as the event handler task ``name``.

    Args:
        name: the task name the subscriptions file refers to.
        options: platform task options (``max_retries``, ``retry_base``...).
    """

    def declare(function: Callable[[Event[Any]], Any]) -> Task:
        def handle(event: dict[str, Any]) -> Any:
            return function(load_event(event))

        handle.__name__ = function.__name__
        handle.__qualname__ = function.__qualname__
        handle.__doc__ = function.__doc__
        handle.__module__ = function.__module__
        return app.task(name=name, **options)(handle)  # type: ignore[no-any-return]

    return declare
