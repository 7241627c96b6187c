"""Enqueue many tasks at once, waiting for the broker's confirms once.

One-at-a-time publishing waits a round trip per message. Here messages are
pipelined on a channel in confirm mode, with at most ``window`` unconfirmed,
and the call returns only when every one is confirmed; an unroutable, nacked
or unconfirmed message raises :class:`~workers.errors.PublishError` naming
how many of the batch are known to be safe. The messages are the same Celery
protocol 2 messages ``apply_async`` sends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import amqp
from kombu.serialization import dumps

from config.topology import TASKS_EXCHANGE
from workers.errors import PublishError

if TYPE_CHECKING:
    from celery import Task

#: Unconfirmed messages allowed in flight before waiting for confirms.
DEFAULT_WINDOW = 500


class _Confirms:
    """Tracks outstanding delivery tags on one confirm-mode channel."""

    def __init__(self) -> None:
        self.next_tag = 1
        self.outstanding: dict[int, str] = {}
        self.failed: list[str] = []

    def sent(self, task_id: str) -> None:
        self.outstanding[self.next_tag] = task_id
        self.next_tag += 1

    def _settle(self, tag: int, multiple: bool, failed: bool) -> None:
        tags = [t for t in self.outstanding if t <= tag] if multiple else [tag]
        for settled in tags:
            task_id = self.outstanding.pop(settled, None)
            if failed and task_id is not None:
                self.failed.append(f"{task_id}: nacked by the broker")

    def on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, failed=False)

    def on_nack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, failed=True)

    def on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self.failed.append(f"{message.properties.get('correlation_id')}: unroutable to {routing_key!r}")


def enqueue_many(
    task: Task,
    calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]],
    queue: str | None = None,
    window: int = DEFAULT_WINDOW,
    timeout: float | None = None,
) -> list[str]:
    """Publish one ``task`` message per ``(args, kwargs)`` in ``calls``.

    Args:
        task: a platform task.
        calls: the arguments of each call.
        queue: the work queue (default: where the router sends ``task``).
        window: unconfirmed messages allowed in flight.
        timeout: seconds to wait for the last confirms (default: the
            publish timeout from the settings).

    Returns:
        The task ids, in order, all confirmed by the broker.

    Raises:
        PublishError: some message was not confirmed (the message says how many
            were sent and which failed); the broker was unreachable.
    """
    app = task.app
    settings = app.conf.platform_settings
    timeout = settings.publish_timeout if timeout is None else timeout
    queue = queue or _route(task)
    ids: list[str] = []
    confirms = _Confirms()
    url = app.connection_for_write()
    try:
        connection = amqp.Connection(
            f"{url.hostname or '127.0.0.1'}:{url.port or 5672}",
            userid=url.userid or "guest",
            password=url.password or "guest",
            virtual_host=url.virtual_host or "/",
            connect_timeout=settings.publish_timeout,
        )
        connection.connect()
    except (OSError, amqp.exceptions.AMQPError) as exc:
        raise PublishError(f"could not connect to the broker at {url.as_uri()}: {exc}") from exc
    try:
        channel = connection.channel()
        channel.confirm_select()
        channel.events["basic_ack"].add(confirms.on_ack)
        channel.events["basic_nack"].add(confirms.on_nack)
        channel.events["basic_return"].add(confirms.on_return)
        for args, kwargs in calls:
            task_id = str(uuid.uuid4())
            channel.basic_publish(
                _message(task, task_id, args, kwargs), TASKS_EXCHANGE, queue, mandatory=True
            )
            confirms.sent(task_id)
            ids.append(task_id)
            while len(confirms.outstanding) >= window:
                _drain(connection, timeout, confirms, len(ids))
        while confirms.outstanding:
            _drain(connection, timeout, confirms, len(ids))
    except (OSError, amqp.exceptions.AMQPError) as exc:
        raise PublishError(
            f"batch of {task.name} interrupted after {len(ids)} messages "
            f"({len(ids) - len(confirms.outstanding)} confirmed): {exc}"
        ) from exc
    finally:
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
    if confirms.failed:
        raise PublishError(
            f"{len(confirms.failed)} of {len(ids)} {task.name} messages were not accepted: "
            + "; ".join(confirms.failed[:5])
        )
    return ids


def _drain(connection: amqp.Connection, timeout: float, confirms: _Confirms, sent: int) -> None:
    deadline = time.monotonic() + timeout
    before = len(confirms.outstanding)
    while len(confirms.outstanding) == before:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PublishError(
                f"{before} of {sent} messages not confirmed within {timeout}s; they may or may not "
                "have reached the broker"
            )
        try:
            connection.drain_events(timeout=remaining)
        except TimeoutError:
            continue


def _route(task: Task) -> str:
    route = task.app.amqp.router.route({}, task.name, (), {})
    queue = route.get("queue")
    return getattr(queue, "name", None) or task.app.conf.task_default_queue


def _message(task: Task, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> amqp.Message:
    app = task.app
    headers, properties, body, _ = app.amqp.as_task_v2(
        task_id, task.name, args=list(args), kwargs=dict(kwargs)
    )
    content_type, content_encoding, data = dumps(body, serializer="json")
    return amqp.Message(
        data,
        content_type=content_type,
        content_encoding=content_encoding,
        application_headers=headers,
        delivery_mode=2,
        correlation_id=properties.get("correlation_id", task_id),
        reply_to=properties.get("reply_to") or "",
    )
