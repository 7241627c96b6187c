"""The one place that settles a delivery: republish with confirms, then ack.

Every outcome of a delivery ends here (DESIGN.md's lifecycle table):

- retry: republish to ``<queue>.retry.<n>`` with a per-message TTL, confirmed;
- dead letter: republish to ``<queue>.dlq`` through the dead-letter exchange,
  confirmed, with the failure's metadata;
- then, and only then, ack the original delivery.

If a republish is not confirmed, the original is requeued instead of acked: at
worst a duplicate, never a loss. The body is passed on byte for byte. This
runs in the worker's main process, which holds the raw message.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from config.topology import DEAD_LETTER_EXCHANGE, Topology
from workers.errors import PublishError
from workers.headers import Failure, Origin, failure_headers

if TYPE_CHECKING:
    from celery import Celery
    from kombu.message import Message

logger = logging.getLogger(__name__)

#: Message properties carried over to a republished copy.
CARRIED_PROPERTIES = ("correlation_id", "reply_to", "priority", "message_id", "timestamp", "type")


def message_origin(message: Message, topology: Topology, queue_by_tag: Mapping[str, str]) -> Origin:
    """The queue, exchange and routing key a delivery came from."""
    info = message.delivery_info or {}
    routing_key = info.get("routing_key") or ""
    # Work queues are bound with their own name as routing key; a queue bound
    # otherwise (an event subscription) is found by the consumer tag.
    queue = queue_by_tag.get(info.get("consumer_tag") or "") or routing_key
    return Origin(queue=queue, exchange=info.get("exchange") or "", routing_key=routing_key)


class Lifecycle:
    """Settles deliveries for one Celery app (one per worker main process)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.settings = app.conf.platform_settings
        self.topology: Topology = app.conf.platform_topology
        #: The worker's node name, written into ``x-worker``.
        self.worker = socket.gethostname()
        #: Returns the consumer-tag -> queue map of the running consumer.
        self.queue_by_tag: Callable[[], Mapping[str, str]] = dict

    def origin(self, message: Message) -> Origin:
        return message_origin(message, self.topology, self.queue_by_tag())

    def retry(
        self,
        message: Message,
        failure: Failure,
        delay: float,
        retry_number: int,
        ack: Callable[[], Any],
        requeue: Callable[[], Any],
    ) -> bool:
        """Send ``message`` to its delay queue for ``delay`` seconds, then ack.

        Returns:
            True if the message was moved; False if it was requeued instead.
        """
        origin = self.origin(message)
        if origin.queue not in self.topology:
            # No ladder for this queue: dead-letter rather than lose the retry.
            return self.dead_letter(message, failure, retry_number - 1, ack, requeue)
        target = self.topology[origin.queue].retry_tier(retry_number)
        headers = self._headers(message, failure, origin, retry_number)
        return self._move(message, "", target, headers, ack, requeue, expiration=delay)

    def dead_letter(
        self,
        message: Message,
        failure: Failure,
        retries: int,
        ack: Callable[[], Any],
        requeue: Callable[[], Any],
    ) -> bool:
        """Send ``message`` to its queue's DLQ with the failure's metadata, then ack.

        Returns:
            True if the message was moved; False if it was requeued instead.
        """
        origin = self.origin(message)
        headers = self._headers(message, failure, origin, retries)
        logger.warning(
            "dead-lettering message %s from %s: %s: %s",
            headers.get("x-task-id") or "?",
            origin.queue,
            failure.error_class,
            failure.error_message,
        )
        return self._move(message, DEAD_LETTER_EXCHANGE, origin.queue, headers, ack, requeue)

    def _headers(self, message: Message, failure: Failure, origin: Origin, retries: int) -> dict[str, Any]:
        return failure_headers(
            message.headers,
            failure=failure,
            origin=origin,
            retries=retries,
            worker=self.worker,
            traceback_limit=self.settings.traceback_limit,
        )

    def _move(
        self,
        message: Message,
        exchange: str,
        routing_key: str,
        headers: dict[str, Any],
        ack: Callable[[], Any],
        requeue: Callable[[], Any],
        expiration: float | None = None,
    ) -> bool:
        try:
            publish_raw(self.app, message, exchange, routing_key, headers, expiration)
        except Exception as exc:  # noqa: BLE001 - any failure to publish means "keep it"
            logger.error(
                "could not republish to %s/%s, requeueing the original: %r",
                exchange or "(default)",
                routing_key,
                exc,
            )
            requeue()
            return False
        ack()
        return True


def publish_raw(
    app: Celery,
    message: Message,
    exchange: str,
    routing_key: str,
    headers: Mapping[str, Any],
    expiration: float | None = None,
) -> None:
    """Publish a copy of ``message`` (same body bytes and properties) and wait for the confirm.

    Raises:
        PublishError: the broker did not take it (unroutable, nacked, timed out,
            or the connection failed).
    """
    settings = app.conf.platform_settings
    properties = {key: message.properties[key] for key in CARRIED_PROPERTIES if key in message.properties}
    try:
        with app.producer_pool.acquire(block=True, timeout=settings.publish_timeout) as producer:
            producer.publish(
                message.body,
                exchange=exchange,
                routing_key=routing_key,
                headers=dict(headers),
                content_type=message.content_type or "application/octet-stream",
                content_encoding=message.content_encoding or "binary",
                delivery_mode=2,
                mandatory=True,
                expiration=expiration,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.5},
                timeout=settings.publish_timeout,
                confirm_timeout=settings.publish_timeout,
                **properties,
            )
    except Exception as exc:
        raise PublishError(f"publish to {exchange or '(default)'}/{routing_key} failed: {exc!r}") from exc


def lifecycle_for(app: Celery) -> Lifecycle:
    """The :class:`Lifecycle` of ``app`` in this process (created on first use)."""
    lifecycle = app.__dict__.get("_platform_lifecycle")
    if lifecycle is None:
        lifecycle = Lifecycle(app)
        app.__dict__["_platform_lifecycle"] = lifecycle
    return lifecycle
