"""Publish events: facts that happened, for whoever subscribes.

::

    from tasks.events import publish, publish_many

    event_id = publish("order.created", {"order_id": "o-1", "amount": 12.5})
    ids = publish_many([("order.created", data) for data in batch])

A publisher knows only the events exchange: the routing key is the event type,
and every subscribing service (declared in the subscriptions file) gets the
event on its own queue. ``publish`` returns once the broker confirmed the
event; ``publish_many`` waits for confirms once for the whole batch.

On the wire each event is a CloudEvents 1.0 envelope in the AMQP binding
(:mod:`workers.events.envelope`), so services in other languages can publish
and consume too. Before anything is sent:

- the type is checked (``entity.action`` in the past tense, optional
  ``domain.`` prefix and ``.vN`` suffix): :class:`EventTypeError`;
- the data is validated against the catalog's model for that type and version
  (:mod:`tasks.events.catalog`): :class:`EventSchemaError`;
- a body over ``PLATFORM_MAX_MESSAGE_BYTES`` is refused (:class:`EventTooLarge`)
  unless claim-check is on, in which case the data goes to the blob store and
  the message carries a reference that consumers follow transparently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from config.app import platform_config
from tasks.events.catalog import REGISTRY
from tasks.events.handlers import Event, EventSchemaError, event_handler
from workers.events.envelope import CloudEvent, EventTypeError, new_event_id, parse_event_type, utc_now
from workers.events.publisher import EventTooLarge, OutgoingEvent, apply_size_limit, encode_data, publish_one
from workers.events.publisher import publish_many as publish_outgoing

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "Event",
    "EventSchemaError",
    "EventTooLarge",
    "EventTypeError",
    "event_handler",
    "prepare",
    "publish",
    "publish_many",
]


def _app(app: Celery | None) -> Celery:
    if app is not None:
        return app
    from config import app as default_app

    return default_app


def prepare(
    event_type: str,
    data: BaseModel | Mapping[str, Any],
    *,
    app: Celery | None = None,
    source: str | None = None,
    subject: str | None = None,
    event_id: str | None = None,
    time: str | None = None,
) -> OutgoingEvent:
    """Check, validate and encode one event without sending it.

    Raises:
        EventTypeError: the type is malformed or not in the past tense.
        EventSchemaError: no schema for the type and version, or the data
            does not match it.
        EventTooLarge: the body is over the limit and claim-check is off.
    """
    app = _app(app)
    settings = platform_config(app).settings
    parsed = parse_event_type(event_type)
    model = REGISTRY.schema(event_type)
    if model is None:
        raise EventSchemaError(
            f"no schema for {event_type} (version {parsed.version}); register one in tasks/events/catalog.py"
        )
    try:
        validated = data if isinstance(data, model) else model.model_validate(dict(data))  # type: ignore[arg-type]
    except ValidationError as exc:
        raise EventSchemaError(f"{event_type} data does not match its schema: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise EventSchemaError(f"{event_type} data must be a mapping or a {model.__name__}: {exc}") from None
    event = CloudEvent(
        id=event_id or new_event_id(),
        source=source or settings.events_source,
        type=event_type,
        time=time or utc_now(),
        dataschema=f"urn:platform:schema:{parsed.base}:v{parsed.version}",
        subject=subject,
    )
    body = encode_data(validated.model_dump(mode="json"))
    return apply_size_limit(OutgoingEvent(event, body), settings)


def publish(
    event_type: str,
    data: BaseModel | Mapping[str, Any],
    *,
    app: Celery | None = None,
    source: str | None = None,
    subject: str | None = None,
    event_id: str | None = None,
) -> str:
    """Publish one event and return its id once the broker confirmed it.

    Raises:
        EventTypeError, EventSchemaError, EventTooLarge: see :func:`prepare`.
        PublishError: the broker did not confirm it (unreachable, timed out,
            or a ``reject-publish`` subscriber queue is full).
    """
    app = _app(app)
    outgoing = prepare(event_type, data, app=app, source=source, subject=subject, event_id=event_id)
    publish_one(app, outgoing)
    return outgoing.event.id


def publish_many(
    events: Iterable[tuple[str, BaseModel | Mapping[str, Any]]],
    *,
    app: Celery | None = None,
    source: str | None = None,
) -> list[str]:
    """Publish many ``(event type, data)`` pairs, waiting for confirms once.

    Every event is checked before the first is sent, so a bad one sends none.

    Returns:
        The event ids, in order.

    Raises:
        EventTypeError, EventSchemaError, EventTooLarge: see :func:`prepare`.
        PublishError: some were not confirmed (the message names them).
    """
    app = _app(app)
    outgoing = [prepare(event_type, data, app=app, source=source) for event_type, data in events]
    publish_outgoing(app, outgoing)
    return [item.event.id for item in outgoing]
