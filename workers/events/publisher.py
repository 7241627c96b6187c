"""Publish events to the events exchange, confirmed by the broker.

One event: a pooled connection of the app, one confirm. Many events: a
dedicated channel in confirm mode with up to ``window`` unconfirmed messages
in flight (the pattern of :mod:`workers.delivery.batch`), returning once all are
confirmed. Either way the events exchange and the event log stream are
declared first (idempotent, cached per connection), so an event is kept in
the log even before any subscriber exists.

An event is routed by its type to every bound subscriber queue. A
``reject-publish`` subscriber queue that is full makes the broker nack the
publish while the other subscribers still get it; publishing again with the
same event id is safe (subscribers are idempotent by event id).
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import amqp
from kombu import Exchange

from config.app import platform_config
from config.topology import event_log, event_log_arguments
from workers.broker import ConfirmWindow, amqp_connection, close_quietly
from workers.errors import MessageTooLarge, PublishError
from workers.events.blobs import BlobStore, claim_check_body, open_blob_store
from workers.events.envelope import CLAIM_CHECK_ATTRIBUTE, CloudEvent

if TYPE_CHECKING:
    from celery import Celery

    from config.settings import Settings

#: Unconfirmed events allowed in flight by :func:`publish_many`.
DEFAULT_WINDOW = 500


#: An event's body is over the size limit and claim-check is off: the one size error of
#: every publish path (tasks raise it too), under the name this module always gave it.
EventTooLarge = MessageTooLarge


@dataclass(frozen=True)
class OutgoingEvent:
    """An event ready for the wire: its attributes and its body bytes."""

    event: CloudEvent
    body: bytes

    def headers(self) -> dict[str, str]:
        return self.event.headers()

    def properties(self) -> dict[str, Any]:
        return {**self.event.properties(), "timestamp": int(time.time())}


def encode_data(data: Any) -> bytes:
    """JSON bytes of an event's data (compact, UTF-8)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def apply_size_limit(
    outgoing: OutgoingEvent, settings: Settings, store: BlobStore | None = None
) -> OutgoingEvent:
    """``outgoing`` within ``settings.max_message_bytes``: as is, claim-checked, or refused.

    Raises:
        EventTooLarge: the body is over the limit and claim-check is off.
    """
    size = len(outgoing.body)
    if size <= settings.max_message_bytes:
        return outgoing
    if not settings.claim_check:
        raise EventTooLarge(
            f"event {outgoing.event.type} {outgoing.event.id}: body of {size} bytes is over the "
            f"limit of {settings.max_message_bytes} bytes (PLATFORM_MAX_MESSAGE_BYTES); send less "
            "data, or turn on claim-check (PLATFORM_CLAIM_CHECK=true) to pass a reference instead"
        )
    store = store or open_blob_store(settings.blob_dir)
    reference = store.put(outgoing.event.id, outgoing.body)
    extensions = {**outgoing.event.extensions, CLAIM_CHECK_ATTRIBUTE: reference}
    return OutgoingEvent(
        replace(outgoing.event, extensions=extensions), claim_check_body(reference, outgoing.body)
    )


def publish_one(app: Celery, outgoing: OutgoingEvent) -> None:
    """Publish one event and wait for the broker's confirm.

    Raises:
        PublishError: the broker nacked it (a full subscriber queue), did not
            confirm in time, or could not be reached.
    """
    settings = platform_config(app).settings
    exchange = Exchange(settings.events_exchange, "topic", durable=True)
    try:
        with app.producer_pool.acquire(block=True, timeout=settings.publish_timeout) as producer:
            _declare(producer.channel, settings)
            producer.publish(
                outgoing.body,
                exchange=exchange,
                routing_key=outgoing.event.type,
                headers=outgoing.headers(),
                serializer=None,
                # kombu's retry would publish a nacked event again (to every
                # subscriber); the caller decides, with the same event id.
                retry=False,
                timeout=settings.publish_timeout,
                confirm_timeout=settings.publish_timeout,
                **outgoing.properties(),
            )
    except Exception as exc:
        raise PublishError(_explain(outgoing.event, exc)) from exc


#: Connections on which the events exchange and log are declared (and with what).
_declared: weakref.WeakKeyDictionary[Any, tuple[str, float]] = weakref.WeakKeyDictionary()


def _declare(channel: Any, settings: Settings) -> None:
    """Declare the events exchange and the event log once per connection."""
    key = (settings.events_exchange, settings.event_log_retention)
    if _declared.get(channel.connection) == key:
        return
    channel.exchange_declare(settings.events_exchange, "topic", durable=True, auto_delete=False)
    if settings.event_log_retention > 0:
        log = event_log(settings.events_exchange)
        channel.queue_declare(
            log, durable=True, auto_delete=False, arguments=event_log_arguments(settings.event_log_retention)
        )
        channel.queue_bind(log, settings.events_exchange, "#")
    _declared[channel.connection] = key


def _nacked(exc: BaseException | None) -> bool:
    """Whether the broker nacked the publish (py-amqp's MessageNacked, maybe wrapped by kombu)."""
    seen = 0
    while exc is not None and seen < 8:
        if "nack" in type(exc).__name__.lower() or "nack" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _explain(event: CloudEvent, exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if _nacked(exc):
        return (
            f"the broker refused event {event.type} {event.id}: a subscriber queue is full "
            "(reject-publish); the other subscribers got it, and publishing it again with the same "
            "id is safe"
        )
    return f"event {event.type} {event.id} was not confirmed by the broker: {text}"


def publish_many(
    app: Celery,
    events: Iterable[OutgoingEvent],
    window: int = DEFAULT_WINDOW,
    timeout: float | None = None,
    exchange: str | None = None,
    routing_key: str | None = None,
) -> int:
    """Publish every event, pipelined, and return once all are confirmed.

    Args:
        app: the platform app (broker URL and settings).
        events: the events to publish.
        window: unconfirmed events allowed in flight.
        timeout: seconds to wait for confirms (default: the publish timeout).
        exchange: where to publish (default: the events exchange).
        routing_key: fixed routing key (default: each event's type).

    Returns:
        How many events were published.

    Raises:
        PublishError: some events were nacked or not confirmed; the message
            says how many and which.
    """
    settings = platform_config(app).settings
    timeout = settings.publish_timeout if timeout is None else timeout
    target = settings.events_exchange if exchange is None else exchange
    connection = amqp_connection(app.connection_for_write(), settings.publish_timeout)
    confirms: ConfirmWindow | None = None
    try:
        channel = connection.channel()
        _declare(channel, settings)
        confirms = ConfirmWindow(connection, channel, timeout, window)
        for outgoing in events:
            message = amqp.Message(
                outgoing.body, application_headers=outgoing.headers(), **outgoing.properties()
            )
            confirms.publish(message, target, routing_key or outgoing.event.type, item=outgoing.event)
        confirms.wait_all()
    except (OSError, amqp.exceptions.AMQPError) as exc:
        sent, done = (confirms.sent, confirms.confirmed) if confirms else (0, 0)
        raise PublishError(f"publishing events interrupted after {sent} ({done} confirmed): {exc}") from exc
    finally:
        close_quietly(connection)
    sent = confirms.sent
    if confirms.nacked:
        ids = ", ".join(event.id for event in confirms.nacked[:5])
        raise PublishError(
            f"the broker refused {len(confirms.nacked)} of {sent} events (a subscriber queue is full); "
            f"the other subscribers got them, publishing them again is safe: {ids}"
        )
    return sent


def outgoing_events(events: Sequence[tuple[CloudEvent, bytes]]) -> list[OutgoingEvent]:
    """Pair attributes and bodies (a small convenience for callers)."""
    return [OutgoingEvent(event, body) for event, body in events]
