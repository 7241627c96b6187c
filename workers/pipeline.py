"""Pipelined publishing with confirms on a raw py-amqp channel.

Waiting for each confirm costs a round trip per message; here many messages
are in flight and their confirms are counted as they arrive. Batch enqueue
(:mod:`workers.batch`), event publishing and backfill share these pieces: a
connection to the app's broker, the tracker of outstanding delivery tags, and
a bounded wait for confirms.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import amqp

from workers.errors import PublishError

if TYPE_CHECKING:
    from celery import Celery


class Confirms:
    """Outstanding delivery tags of one confirm-mode channel and what became of them."""

    def __init__(self) -> None:
        self.next_tag = 1
        #: Delivery tag -> the item published with it (a task id, an event...).
        self.outstanding: dict[int, Any] = {}
        #: Items the broker refused (basic.nack).
        self.nacked: list[Any] = []
        #: Routing keys of messages returned as unroutable (mandatory publishes).
        self.returned: list[str] = []

    def attach(self, channel: amqp.Channel, select: bool = True) -> None:
        """Count ``channel``'s acks, nacks and returns (putting it in confirm mode first)."""
        if select:
            channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: self.settle(tag, multiple, nacked=False))
        channel.events["basic_nack"].add(lambda tag, multiple: self.settle(tag, multiple, nacked=True))
        channel.events["basic_return"].add(self._on_return)

    def sent(self, item: Any) -> None:
        """Record one publish (call right after ``basic_publish``)."""
        self.outstanding[self.next_tag] = item
        self.next_tag += 1

    def settle(self, tag: int, multiple: bool, nacked: bool) -> None:
        tags = [t for t in self.outstanding if t <= tag] if multiple else [tag]
        for settled in tags:
            item = self.outstanding.pop(settled, None)
            if nacked and item is not None:
                self.nacked.append(item)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self.returned.append(routing_key)


def drain_confirms(connection: amqp.Connection, timeout: float, confirms: Confirms) -> None:
    """Wait until at least one more outstanding message is settled.

    Raises:
        PublishError: nothing was settled within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    before = len(confirms.outstanding)
    while len(confirms.outstanding) == before:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PublishError(
                f"{before} messages not confirmed within {timeout}s; they may or may not have reached "
                "the broker"
            )
        try:
            connection.drain_events(timeout=remaining)
        except TimeoutError:
            continue


def connect(app: Celery) -> amqp.Connection:
    """A fresh py-amqp connection to the app's broker.

    Raises:
        PublishError: the broker can't be reached.
    """
    settings = app.conf.platform_settings
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
    return connection


def close_quietly(connection: amqp.Connection) -> None:
    """Close ``connection``, ignoring that it may already be broken."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a broken connection
        pass
