"""Enqueue many tasks at once, waiting for the broker's confirms once.

One-at-a-time publishing waits a round trip per message. Here messages are
pipelined on a channel in confirm mode, with at most ``window`` unconfirmed,
and the call returns only when every one is confirmed; an unroutable, nacked
or unconfirmed message raises :class:`~workers.errors.PublishError` naming
how many of the batch are known to be safe. The messages are the same Celery
protocol 2 messages ``apply_async`` sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import amqp
from kombu.serialization import dumps

from config.app import platform_config
from config.topology import TASKS_EXCHANGE
from workers.broker import ConfirmWindow, amqp_connection, close_quietly
from workers.delivery.delays import check_countdown, check_eta
from workers.delivery.publishing import check_body_size, delayed_destination
from workers.errors import MessageTooLarge, PublishError

if TYPE_CHECKING:
    from celery import Task

#: Unconfirmed messages allowed in flight before waiting for confirms.
DEFAULT_WINDOW = 500


def enqueue_many(
    task: Task,
    calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]],
    queue: str | None = None,
    window: int = DEFAULT_WINDOW,
    timeout: float | None = None,
    countdown: float | None = None,
    eta: Any = None,
) -> list[str]:
    """Publish one ``task`` message per ``(args, kwargs)`` in ``calls``.

    Args:
        task: a platform task.
        calls: the arguments of each call.
        queue: the work queue (default: where the router sends ``task``).
        window: unconfirmed messages allowed in flight.
        timeout: seconds to wait for the last confirms (default: the
            publish timeout from the settings).
        countdown: delay every message this many seconds (held by the broker).
        eta: or make every message due at this aware datetime.

    Returns:
        The task ids, in order, all confirmed by the broker.

    Raises:
        PublishError: some message was not confirmed (the message says how many
            were sent and which failed); the broker was unreachable.
        DelayError: ``countdown`` or ``eta`` can't be held by the broker.
        MessageTooLarge: a message's body is over ``PLATFORM_MAX_MESSAGE_BYTES``
            (it was not sent; the message says how many before it were).
    """
    app = task.app
    if countdown is not None:
        eta = datetime.now(UTC) + timedelta(seconds=check_countdown(countdown))
    elif eta is not None:
        eta = check_eta(eta)
    settings = platform_config(app).settings
    timeout = settings.publish_timeout if timeout is None else timeout
    exchange, queue = _destination(task, queue)
    ids: list[str] = []
    connection = amqp_connection(app.connection_for_write(), settings.publish_timeout)
    confirms: ConfirmWindow | None = None
    try:
        confirms = ConfirmWindow(connection, connection.channel(), timeout, window)
        for args, kwargs in calls:
            task_id = str(uuid.uuid4())
            try:
                message = _message(task, task_id, args, kwargs, eta, settings.max_message_bytes)
            except MessageTooLarge as exc:
                confirms.wait_all()
                raise MessageTooLarge(
                    f"{exc} (message {len(ids) + 1} of the batch; the {len(ids)} before it were "
                    "sent and confirmed)"
                ) from None
            delayed = delayed_destination(message.properties["application_headers"], queue)
            target_exchange, routing_key = delayed or (exchange, queue)
            confirms.publish(message, target_exchange, routing_key, item=task_id, mandatory=True)
            ids.append(task_id)
        confirms.wait_all()
    except (OSError, amqp.exceptions.AMQPError) as exc:
        raise PublishError(
            f"batch of {task.name} interrupted after {len(ids)} messages "
            f"({confirms.confirmed if confirms else 0} confirmed): {exc}"
        ) from exc
    finally:
        close_quietly(connection)
    if confirms.returned or confirms.nacked:
        raise PublishError(
            f"{len(confirms.returned)} of {len(ids)} {task.name} messages were unroutable to {queue!r} "
            f"and {len(confirms.nacked)} nacked by the broker (e.g. {', '.join(confirms.nacked[:3]) or '-'})"
        )
    return ids


def _destination(task: Task, queue: str | None) -> tuple[str, str]:
    """(exchange, routing key) exactly as ``apply_async`` would route ``task``.

    Celery's router decides, from the call's ``queue`` over the task's own
    ``queue=`` option over the task routes over the default queue.
    """
    options = dict(task._get_exec_options())
    if queue:
        options["queue"] = queue
    route = task.app.amqp.router.route(options, task.name, (), {}, task_type=task)
    target = route.get("queue")
    name = getattr(target, "name", None) or task.app.conf.task_default_queue
    exchange = getattr(getattr(target, "exchange", None), "name", None) or TASKS_EXCHANGE
    routing_key = route.get("routing_key") or getattr(target, "routing_key", None) or name
    return exchange, routing_key


def _message(
    task: Task,
    task_id: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    eta: datetime | None,
    max_bytes: int,
) -> amqp.Message:
    app = task.app
    headers, properties, body, _ = app.amqp.as_task_v2(
        task_id, task.name, list(args), dict(kwargs), None, eta
    )
    content_type, content_encoding, data = dumps(body, serializer="json")
    if isinstance(data, str):
        data = data.encode(content_encoding)
    check_body_size(len(data), max_bytes, task.name)
    return amqp.Message(
        data,
        content_type=content_type,
        content_encoding=content_encoding,
        application_headers=headers,
        delivery_mode=2,
        correlation_id=properties.get("correlation_id", task_id),
        reply_to=properties.get("reply_to") or "",
    )
