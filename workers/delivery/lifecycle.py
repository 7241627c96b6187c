"""The one place that settles a delivery: republish with confirms, then ack.

Every outcome of a delivery ends here (DESIGN.md's lifecycle table):

- retry: republish to ``<queue>.retry.<n>`` with a per-message TTL, confirmed
  (or, for a wait the task asked for with ``self.retry(countdown=...)``, to the
  broker's delay levels);
- postpone: a message that arrived before its ``eta`` goes to the delay levels;
- dead letter: republish to ``<queue>.dlq`` through the dead-letter exchange,
  confirmed, with the failure's metadata;
- then, and only then, ack the original delivery.

If a republish is not confirmed, the original is requeued instead of acked: at
worst a duplicate, never a loss. The body is passed on byte for byte. This
runs in the worker's main process, which holds the raw message.

One :class:`Lifecycle` per worker main process, built complete by the
platform consumer when the worker starts (:func:`install_lifecycle`) and
handed out by :func:`lifecycle_of`; Celery's request objects find it through
their app.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from config.app import platform_config
from config.topology import DEAD_LETTER_EXCHANGE, Topology
from workers.delivery.delays import delay_route, delay_units, seconds_until
from workers.delivery.headers import (
    DELAY_DUE_AT,
    TASK_ID,
    Failure,
    Origin,
    failure_headers,
    without_broker_history,
)
from workers.errors import PublishError

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
    """Settles deliveries for one Celery app (one per worker main process).

    Args:
        app: the platform app (settings, topology, producer pool).
        worker: the worker's node name, written into ``x-worker``.
        queue_by_tag: returns the running consumer's consumer-tag -> queue map.
    """

    def __init__(self, app: Celery, worker: str, queue_by_tag: Callable[[], Mapping[str, str]]) -> None:
        self.app = app
        platform = platform_config(app)
        self.settings = platform.settings
        self.topology: Topology = platform.topology
        self.worker = worker
        self.queue_by_tag = queue_by_tag

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
        scheduled: bool = False,
    ) -> bool:
        """Send ``message`` to wait ``delay`` seconds in the broker, then ack.

        A backoff waits in the queue's retry ladder (``<queue>.retry.<n>``, whose
        messages all wait about as long); a wait the task chose itself
        (``scheduled``) waits in the delay levels, so a long one never holds
        back the ladder's short ones.

        Returns:
            True if the message was moved; False if it was requeued instead.
        """
        origin = self.origin(message)
        if origin.queue not in self.topology:
            # No ladder for this queue: dead-letter rather than lose the retry.
            return self.dead_letter(message, failure, retry_number - 1, ack, requeue)
        headers = self._headers(message, failure, origin, retry_number)
        if scheduled:
            return self._delay(message, headers, origin.queue, delay, ack, requeue)
        target = self.topology[origin.queue].retry_tier(retry_number)
        return self._move(message, "", target, headers, ack, requeue, expiration=delay)

    def postpone(
        self, message: Message, due: datetime, ack: Callable[[], Any], requeue: Callable[[], Any]
    ) -> bool:
        """Send a message that arrived before its ``eta`` to the delay levels, then ack.

        Its ``eta`` header is cleared: when it is due it arrives as an ordinary
        message, and no worker holds it meanwhile.

        Returns:
            True if the message was moved; False if it was requeued instead.
        """
        headers = without_broker_history(message.headers)
        headers["eta"] = None
        return self._delay(message, headers, self.origin(message).queue, seconds_until(due), ack, requeue)

    def _delay(
        self,
        message: Message,
        headers: dict[str, Any],
        queue: str,
        seconds: float,
        ack: Callable[[], Any],
        requeue: Callable[[], Any],
    ) -> bool:
        units = delay_units(seconds)
        due = datetime.now(UTC) + timedelta(seconds=max(seconds, 0.0))
        headers[DELAY_DUE_AT] = due.isoformat(timespec="milliseconds")
        if units == 0:  # due now: straight back to its queue
            return self._move(message, "", queue, headers, ack, requeue)
        return self._move(message, *delay_route(units, queue), headers, ack, requeue)

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
            headers.get(TASK_ID) or "?",
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
    timeout = platform_config(app).settings.publish_timeout
    properties = {key: message.properties[key] for key in CARRIED_PROPERTIES if key in message.properties}
    try:
        with app.producer_pool.acquire(block=True, timeout=timeout) as producer:
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
                timeout=timeout,
                confirm_timeout=timeout,
                **properties,
            )
    except Exception as exc:
        raise PublishError(f"publish to {exchange or '(default)'}/{routing_key} failed: {exc!r}") from exc


#: The lifecycle of each app's worker in this process (set once, when the consumer starts).
_installed: weakref.WeakKeyDictionary[Celery, Lifecycle] = weakref.WeakKeyDictionary()


def install_lifecycle(app: Celery, lifecycle: Lifecycle) -> None:
    """Make ``lifecycle`` the one :func:`lifecycle_of` returns for ``app`` in this process."""
    _installed[app] = lifecycle


def lifecycle_of(app: Celery) -> Lifecycle:
    """The :class:`Lifecycle` of ``app``'s worker in this process.

    Raises:
        LookupError: no platform consumer started for ``app`` here (the
            ``worker_consumer`` setting is not the platform's).
    """
    try:
        return _installed[app]
    except KeyError:
        raise LookupError(
            f"no platform lifecycle for app {app.main!r}: its worker_consumer must be "
            "workers.delivery.consumer:PlatformConsumer"
        ) from None
