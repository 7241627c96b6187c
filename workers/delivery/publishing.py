"""Where a task message goes when it is published: at once, or into the broker's delay levels.

Every way Celery publishes a task ends in ``app.amqp``: ``Task.apply_async``,
``app.send_task``, ``signature(...).apply_async``, canvas steps, beat, and
``celery call``. :class:`PlatformAMQP` (Celery's ``amqp`` class of the
platform app) checks ``countdown`` and ``eta`` where Celery turns them into the
message's ``eta`` header, and sends a message that is not yet due to the delay
levels (:mod:`workers.delivery.delays`) instead of its queue, with the ``eta``
header cleared and the due time in ``x-delay-due-at``. So no worker ever holds
a delayed message: it reaches its work queue when it is due, as an ordinary
message.

Two more refusals happen here, before anything reaches the broker:

- a ``priority`` (quorum queues have none; :func:`workers.delivery.options.check_priority`),
  checked where Celery builds the message;
- a body over ``PLATFORM_MAX_MESSAGE_BYTES``, the same limit and the same
  :class:`~workers.errors.MessageTooLarge` as events. It is measured on the
  serialized bytes, which exist only inside kombu's ``Producer.publish``: the
  sender hands Celery a :class:`SizeLimitedProducer` that serializes the body
  (exactly as kombu would), measures it and publishes those bytes, so a task
  body is serialized once, as before. ``before_task_publish`` receivers still
  see the body as Celery built it. ``apply_many``
  (:mod:`workers.delivery.batch`) serializes its messages itself and checks
  them with :func:`check_body_size`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery.app.amqp import AMQP
from kombu.serialization import dumps

from config.app import platform_config
from config.topology import TASKS_EXCHANGE
from workers.delivery.delays import DelayError, check_countdown, check_eta, delay_route, delay_units
from workers.delivery.headers import DELAY_DUE_AT
from workers.delivery.options import check_priority
from workers.errors import MessageTooLarge


def check_body_size(size: int, limit: int, name: str) -> None:
    """Refuse a task body of ``size`` bytes over ``limit``.

    Raises:
        MessageTooLarge: it is over the limit (nothing has been sent).
    """
    if size > limit:
        raise MessageTooLarge(
            f"task {name}: body of {size} bytes is over the limit of {limit} bytes "
            "(PLATFORM_MAX_MESSAGE_BYTES); nothing was sent. Pass a reference to the data "
            "(a key in your database or object store) instead of the data itself"
        )


class SizeLimitedProducer:
    """A kombu producer that refuses a task body over the size limit, serializing it only once.

    kombu's ``Producer.publish`` serializes a body it is given without a
    ``content_type``; this does that step itself (the same ``dumps``), checks
    the size, and passes the bytes on with their content type, so kombu sends
    them as they are. Everything else is the wrapped producer's.
    """

    def __init__(self, producer: Any, limit: int, name: str) -> None:
        self._producer = producer
        self._limit = limit
        self._name = name

    def publish(
        self,
        body: Any,
        serializer: str | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
        **options: Any,
    ) -> Any:
        """Serialize ``body`` (unless it already is), refuse it if too large, publish it.

        Raises:
            MessageTooLarge: the serialized body is over the limit.
        """
        if not content_type:
            content_type, content_encoding, body = dumps(
                body, serializer=serializer or self._producer.serializer
            )
        if isinstance(body, str):  # kombu's JSON serializer gives text; the wire carries its bytes
            content_encoding = content_encoding or "utf-8"
            body = body.encode(content_encoding)
        check_body_size(len(body), self._limit, self._name)
        return self._producer.publish(
            body, content_type=content_type, content_encoding=content_encoding, **options
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


def delayed_destination(
    headers: dict[str, Any], queue: str, now: datetime | None = None
) -> tuple[str, str] | None:
    """Where a message with ``headers`` goes if it is not due yet, or None if it is due now.

    Clears the ``eta`` header in place either way (no worker may hold the
    message) and, for a delayed message, records the due time in
    ``x-delay-due-at``.

    Returns:
        (exchange, routing key) into the delay levels, or None.

    Raises:
        DelayError: the eta can't be held (no timezone, too far ahead).
    """
    eta = headers.get("eta")
    if eta is None:
        return None
    due = check_eta(eta, now)
    headers["eta"] = None
    units = delay_units((due - (now or datetime.now(UTC))).total_seconds())
    if units == 0:
        return None
    headers[DELAY_DUE_AT] = due.astimezone(UTC).isoformat(timespec="milliseconds")
    return delay_route(units, queue)


class PlatformAMQP(AMQP):
    """Celery's AMQP helper, with delayed messages held by the broker (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        logging.getLogger("celery.app.base").addFilter(_drop_native_delay_warning)

    def as_task_v2(  # type: ignore[override]
        self,
        task_id: str,
        name: str,
        args: Any = None,
        kwargs: Any = None,
        countdown: Any = None,
        eta: Any = None,
        *rest: Any,
        **options: Any,
    ) -> Any:
        """Celery's protocol 2 message, refusing a countdown or eta the broker can't hold.

        Celery's ``send_task`` passes these positionally, hence the signature.

        Raises:
            DelayError: a negative, infinite or NaN countdown, an eta without
                a timezone, or a delay over the longest the levels hold.
            UnsupportedOption: a priority (quorum queues have none).
        """
        check_priority(options.get("priority"), f"task {name}")
        if countdown is not None:
            check_countdown(countdown)
        if eta is not None:
            check_eta(eta)
        return super().as_task_v2(task_id, name, args, kwargs, countdown, eta, *rest, **options)

    def _create_task_sender(self) -> Any:
        send = super()._create_task_sender()
        platform = platform_config(self.app)
        known = set(platform.topology.names)
        limit = platform.settings.max_message_bytes

        def send_task_message(
            producer: Any,
            name: str,
            message: Any,
            exchange: Any = None,
            routing_key: str | None = None,
            queue: Any = None,
            **options: Any,
        ) -> Any:
            headers = message[0]
            if headers.get("eta") is not None:
                target = _target_queue(queue, exchange, routing_key)
                if target not in known:
                    raise DelayError(
                        f"a delayed task must go to one of the platform's queues ({', '.join(sorted(known))}); "
                        f"{name} was routed to {target!r}"
                    )
                destination = delayed_destination(headers, target)
                if destination is not None:
                    exchange, routing_key = destination
                    queue = None
                    options["declare"] = []
            return send(
                SizeLimitedProducer(producer, limit, name),
                name,
                message,
                exchange=exchange,
                routing_key=routing_key,
                queue=queue,
                **options,
            )

        return send_task_message


def _drop_native_delay_warning(record: logging.LogRecord) -> bool:
    """Silence Celery's warning that its native delayed delivery can't use a direct exchange.

    Celery's ``send_task`` logs it for every delayed task on a quorum queue
    bound to a direct exchange; here the delay is the platform's, so the
    warning ("this task may block the worker") would be wrong.
    """
    return "not supported with native delayed delivery" not in record.getMessage()


def _target_queue(queue: Any, exchange: Any, routing_key: str | None) -> str:
    """The work queue a publish is meant for: the queue's name, else the direct routing key."""
    if queue is not None:
        return str(getattr(queue, "name", queue))
    exchange_name = str(getattr(exchange, "name", exchange) or "")
    if exchange_name in ("", TASKS_EXCHANGE) and routing_key:
        return routing_key
    raise DelayError(
        f"a delayed task must be routed to a work queue through {TASKS_EXCHANGE!r}, "
        f"not exchange {exchange_name!r} with routing key {routing_key!r}"
    )
