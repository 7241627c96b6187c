"""Backfill: replay past events from the event log into one subscriber's queue.

The event log is a RabbitMQ stream (``<events exchange>.log``) bound to every
event type, keeping events for ``PLATFORM_EVENT_LOG_RETENTION`` seconds. It
is read over AMQP 0-9-1 (prefetch plus the ``x-stream-offset`` consumer
argument), so the stream plugin is not needed.

How a new subscriber catches up while live events keep arriving:

1. its queue and bindings are declared first, so every event published from
   now on reaches it live;
2. a *marker* message is appended to the log (header ``x-backfill-marker``,
   no CloudEvents attributes), so everything before it in the log was
   published before step 3 began;
3. the log is read from the start (or from a time) up to the marker, and each
   event the subscriber's patterns match is copied into its queue through the
   tasks exchange (routing key = the queue), pipelined with confirms.

Events published between steps 1 and 2 arrive twice (live and copied); both
copies carry the same event id, hence the same task id ``<service>:<event id>``,
so the handler's idempotency runs it once. Reading "from a time" starts at
the stream chunk holding that time, so a few earlier events may be copied
too; they are handled as any other (once per event id).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import amqp
from kombu.exceptions import OperationalError

from config.app import platform_config
from config.subscriptions import Subscription, topic_matches
from config.topology import TASKS_EXCHANGE, event_log
from workers.broker import (
    ConfirmWindow,
    amqp_connection,
    close_quietly,
    declare_topology,
    masked_url,
    message_headers,
)
from workers.delivery.headers import BACKFILL_MARKER, BACKFILLED_FROM, STREAM_OFFSET
from workers.errors import PublishError
from workers.events.envelope import read_attributes

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

#: Messages read from the log ahead of the copying (stream consumers must set a prefetch).
PREFETCH = 500
#: Unconfirmed copies in flight.
WINDOW = 500
#: Message properties copied from the log to the subscriber queue.
COPIED_PROPERTIES = ("content_type", "content_encoding", "message_id", "type", "timestamp", "correlation_id")


@dataclass
class BackfillResult:
    """What a backfill did."""

    scanned: int = 0
    copied: int = 0
    skipped: int = 0


def backfill_subscriber(
    app: Celery, subscription: Subscription, since: datetime | None = None, idle_timeout: float = 30.0
) -> BackfillResult:
    """Copy the logged events ``subscription`` matches into its queue (see the module doc).

    Args:
        app: the platform app (broker, settings, topology).
        subscription: the subscriber to fill.
        since: read from this time; None reads from the first event the log holds.
        idle_timeout: give up if the log yields nothing for this many seconds.

    Returns:
        Counts of events read, copied and skipped (not matched).

    Raises:
        PublishError: the broker is unreachable, a copy was not confirmed, or
            the log went quiet before the marker came back.
    """
    settings = platform_config(app).settings
    log = event_log(settings.events_exchange)
    with app.connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=1)
            declare_topology(connection, platform_config(app).topology)  # step 1: live events flow
        except (OperationalError, OSError, amqp.exceptions.AMQPError) as exc:
            raise PublishError(f"could not connect to the broker at {masked_url(connection)}: {exc}") from exc
    marker = str(uuid.uuid4())
    result = BackfillResult()
    connection = amqp_connection(app.connection_for_write(), settings.publish_timeout)
    confirms: ConfirmWindow | None = None
    try:
        publishing = connection.channel()
        publishing.confirm_select()
        publishing.basic_publish_confirm(  # step 2
            amqp.Message(b"", application_headers={BACKFILL_MARKER: marker}, delivery_mode=2),
            exchange="",
            routing_key=log,
            mandatory=True,
        )
        # basic_publish_confirm used tag 1; the copies' tags follow it.
        confirms = ConfirmWindow(
            connection, publishing, settings.publish_timeout, WINDOW, select=False, first_tag=2
        )

        reading = connection.channel()
        reading.basic_qos(0, PREFETCH, False)
        # Deliveries are only queued here: py-amqp drains incoming frames inside
        # basic_publish, so copying from the callback would recurse.
        pending: list[amqp.Message] = []
        reading.basic_consume(
            log,
            callback=pending.append,
            arguments={"x-stream-offset": "first" if since is None else since},
        )
        last_activity = time.monotonic()
        done = False
        while not done:  # step 3
            if not pending:
                if time.monotonic() - last_activity > idle_timeout:
                    raise PublishError(f"the event log {log} went quiet before the backfill marker came back")
                try:
                    connection.drain_events(timeout=1)
                except TimeoutError:
                    pass
                continue
            last_activity = time.monotonic()
            message = pending.pop(0)
            reading.basic_ack(message.delivery_tag)
            headers = message_headers(message)
            if BACKFILL_MARKER in headers:
                done = headers[BACKFILL_MARKER] == marker
                continue
            result.scanned += 1
            attributes = read_attributes(headers)
            event_type = attributes.get("type") or message.delivery_info.get("routing_key", "")
            if not any(topic_matches(pattern, event_type) for pattern in subscription.patterns):
                result.skipped += 1
                continue
            confirms.publish(
                _copy(message, headers, log),
                TASKS_EXCHANGE,
                subscription.queue,
                item=attributes.get("id", "?"),
                mandatory=True,
            )
            result.copied += 1
        confirms.wait_all()
    except (OSError, amqp.exceptions.AMQPError) as exc:
        raise PublishError(
            f"backfill of {subscription.queue} failed after {result.copied} copies: {exc}"
        ) from exc
    finally:
        close_quietly(connection)
    if confirms is not None and confirms.nacked:
        raise PublishError(
            f"{len(confirms.nacked)} copies into {subscription.queue} were refused (queue full?)"
        )
    logger.info("backfilled %d events into %s", result.copied, subscription.queue)
    return result


def _copy(message: amqp.Message, headers: dict[str, Any], log: str) -> amqp.Message:
    """The copy of a logged event that goes to the subscriber's queue."""
    headers.pop(STREAM_OFFSET, None)
    headers[BACKFILLED_FROM] = log
    properties = {key: message.properties[key] for key in COPIED_PROPERTIES if message.properties.get(key)}
    return amqp.Message(message.body, application_headers=headers, delivery_mode=2, **properties)
