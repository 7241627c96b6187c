"""Run a CloudEvent delivered to a subscriber queue as its service's handler task.

The design problem: on the wire an event is a plain CloudEvent (headers
``cloudEvents_*``, body = the data), so that producers and consumers in other
languages take part and the publisher knows nothing of subscribers. Workers,
though, run Celery protocol 2 task messages, and only the task path has the
whole lifecycle: late ack, classification, broker-held backoff, DLQ with
metadata, idempotency, Flower.

The choice: subscriber queues are ordinary platform work queues (consumed by
Celery's own task consumer, with ladders and DLQs from the topology), and a
*receive translator* runs in the worker's main process before the poison
check and Celery's strategy (:meth:`workers.delivery.consumer.PlatformConsumer.translate`):

1. It finds the delivery's queue by consumer tag, hence the subscribing
   service, hence the handler task for the event type (first matching pattern).
2. It adds the Celery protocol 2 headers to the message's own header dict, in
   place: ``task`` = the handler, ``id`` = ``<service>:<event id>`` (the
   idempotency key: the same event id on every redelivery, retry, replay or
   backfill of this service, and distinct between services that share a state
   store), ``retries`` (kept if a retry already set it), plus
   ``x-event-type`` and ``x-event-schema-version`` for operators.
3. It hands Celery a thin view of the message whose *decoded payload* is
   ``{"args": [], "kwargs": {"event": <the CloudEvent as a dict>}}``; Celery
   takes that through its documented hybrid-message path. The body bytes,
   properties, ack and reject stay those of the real delivery.

So the body is never rewritten: a retry or a dead letter carries the original
CloudEvent byte for byte plus the platform's headers, and a replayed dead
letter is a CloudEvent again. Alternatives rejected: a separate ConsumerStep
consumer (its deliveries would bypass the Request machinery, so no late ack
after a prefork child finished, no verdicts, no Flower); making the publisher
write Celery bodies (it must not know subscribers, nor be Celery).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from celery import bootsteps

from config.app import platform_config
from config.subscriptions import Subscription
from workers.delivery.headers import CELERY_RETRIES, EVENT_SCHEMA_VERSION, EVENT_TYPE, retry_count
from workers.events.envelope import (
    EnvelopeError,
    EventTypeError,
    is_cloud_event,
    parse_event_type,
    read_event,
)

logger = logging.getLogger(__name__)

#: Handler name given to an event no pattern of its service matches (dead-letters as unknown-task).
NO_HANDLER = "events.no-handler-for.{service}.{type}"


def handler_task_id(service: str, event_id: str) -> str:
    """The task id of ``service``'s handling of event ``event_id`` (its idempotency key)."""
    return f"{service}:{event_id}"


class EventDelivery:
    """A delivery as Celery's strategy should see it: same message, a task payload.

    Everything but the decoded payload is the real message's (body bytes,
    headers, properties, ack, reject), so the lifecycle settles the real
    delivery and republishes the real body.
    """

    def __init__(self, message: Any, payload: dict[str, Any]) -> None:
        self._message = message
        self._payload = payload

    @property
    def payload(self) -> dict[str, Any]:
        return self._payload

    def decode(self) -> dict[str, Any]:
        return self._payload

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)

    def __repr__(self) -> str:
        return f"<EventDelivery of {self._message!r}>"


def translate_event(message: Any, subscription: Subscription) -> Any:
    """``message`` ready to run as ``subscription``'s handler, or unchanged if it is no CloudEvent.

    Adds the Celery headers to ``message.headers`` in place (they travel with
    retries and dead letters) and returns an :class:`EventDelivery`.
    """
    headers = message.headers
    if headers is None or not is_cloud_event(headers, message.content_type):
        return message
    try:
        received = read_event(headers, message.body, message.content_type)
    except EnvelopeError as exc:
        logger.warning("not a valid CloudEvent on %s: %s", subscription.queue, exc)
        return message  # no 'task' header: dead-lettered as undecodable, with the body kept
    event_type = received.type
    try:
        version: int | str = parse_event_type(event_type).version
    except EventTypeError:
        version = "unknown"
    handler = subscription.handler_for(event_type) or NO_HANDLER.format(
        service=subscription.service, type=event_type
    )
    task_id = handler_task_id(subscription.service, received.id)
    headers.update(
        {
            "lang": "py",
            "task": handler,
            "id": task_id,
            "root_id": headers.get("root_id") or task_id,
            "parent_id": None,
            "group": None,
            "eta": None,
            "expires": None,
            "timelimit": [None, None],
            "argsrepr": "()",
            "kwargsrepr": f"{{'event': <{event_type} {received.id}>}}",
            "origin": received.attributes.get("source", ""),
            "ignore_result": True,
            EVENT_TYPE: event_type,
            EVENT_SCHEMA_VERSION: version,
        }
    )
    headers.setdefault(CELERY_RETRIES, retry_count(headers))  # a retry already set it
    return EventDelivery(message, {"args": [], "kwargs": {"event": received.as_dict()}})


def make_translator(
    subscriptions: Iterable[Subscription], queue_by_tag: Callable[[], Mapping[str, str]]
) -> Callable[[Any], Any]:
    """A receive translator: deliveries on a subscriber queue become its handler's tasks.

    Args:
        subscriptions: the services' subscriptions.
        queue_by_tag: the running consumer's consumer-tag -> queue map.
    """
    by_queue: Mapping[str, Subscription] = {
        subscription.queue: subscription for subscription in subscriptions
    }

    def translate(message: Any) -> Any:
        tag = (message.delivery_info or {}).get("consumer_tag") or ""
        subscription = by_queue.get(queue_by_tag().get(tag, ""))
        if subscription is None:
            return message
        try:
            return translate_event(message, subscription)
        except Exception:  # never lose a delivery to a translation bug (logged)
            logger.exception("could not translate a delivery on %s; leaving it as is", subscription.queue)
            return message

    return translate


class EventDeliveries(bootsteps.Step):
    """Consumer step: register the event translator with the platform consumer."""

    name = "platform events"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        translators = getattr(parent, "receive_translators", None)
        if translators is None:
            raise RuntimeError(
                "events need workers.delivery.consumer:PlatformConsumer (with receive_translators) "
                "as the worker_consumer"
            )
        translators.append(make_translator(platform_config(parent.app).subscriptions, parent.queue_by_tag))
        logger.info(
            "event subscriptions: %s",
            ", ".join(
                f"{s.queue} <- {' '.join(s.patterns)}" for s in platform_config(parent.app).subscriptions
            ),
        )
