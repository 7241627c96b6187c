"""The broker plumbing every wing shares: one helper per chore, named for what it does.

- connections: :func:`amqp_connection` (raw py-amqp, for pipelined confirms),
  :func:`kombu_connection` and :func:`settings_connection` (for the tools; TLS
  from the settings, :mod:`config.tls`), :func:`describe_connect_error`,
  :func:`masked_url` and :func:`masked_text` (what may be printed);
- the topology: :func:`declare_topology`;
- queues: :func:`queue_depth` (passive declare, or None) and
  :func:`require_queue` (passive declare, or :class:`QueueMissing` naming it);
- reading without consuming: :func:`browse_messages` (``basic_get`` without ack
  on a channel that is then closed, so RabbitMQ puts every message back in its
  place; see https://www.rabbitmq.com/docs/confirms#consumer-nacks-requeue);
- publishing many with confirms: :class:`ConfirmWindow` (messages in flight,
  their confirms counted as they arrive, a bounded wait);
- :func:`close_quietly` for channels and connections that may already be broken.

Nothing here knows about tasks, events or dead letters.
"""

from __future__ import annotations

import logging
import re
import ssl as _ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import amqp
from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Connection

from config.settings import Settings
from config.tls import broker_ssl_options
from config.topology import Topology
from workers.errors import PublishError
from workers.frames import TOLERANT_TRANSPORT_OPTIONS, tolerant_frame_handler

logger = logging.getLogger(__name__)

#: scheme://user:password@rest, the password being everything up to the last '@'.
_CREDENTIALS = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@]*):(?P<password>.*)@(?P<rest>[^@]*)$", re.I
)
#: What RabbitMQ says when a classic queue's node is down (a 404 on declare).
HOME_NODE_DOWN = "home node"
#: RabbitMQ's ports for AMQP and for AMQP over TLS (``amqps://``) when a URL names none.
AMQP_PORT, AMQPS_PORT = 5672, 5671
#: What it says while that node is stopping gracefully (``rabbitmqctl stop``): its queue
#: processes are stopped before the node leaves (seen for about 6 s on 3.10.8).
HOME_NODE_STOPPING = "process is stopped by supervisor"
#: Most messages any tool reads from one queue (summaries, pages, event lookups).
SCAN_LIMIT = 10_000


# ---------------------------------------------------------------- connections


def masked_url(url: str | Any) -> str:
    """``url`` (text or a kombu connection) with its password replaced by ``**``, for output.

    A failover list (URLs joined by ``;``) is masked URL by URL.
    """
    if hasattr(url, "as_uri"):
        return str(url.as_uri())  # kombu masks the password itself
    if ";" in str(url):
        return ";".join(masked_url(part) for part in str(url).split(";"))
    # Everything between the user's ':' and the last '@' is the password, even
    # one with a raw '/' or '@' in it that urlsplit would misread.
    match = _CREDENTIALS.match(str(url))
    if match is None:
        return str(url)
    return f"{match['scheme']}{match['user']}:**@{match['rest']}"


#: A URL with credentials anywhere in a text: scheme://user:password@host...
#: The password runs to the last '@' of the URL (a raw '@' in a password is common).
#: A ';' ends it: failover lists join URLs with ';' (kombu).
_URL_IN_TEXT = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s;]*):(?P<password>[^\s;]*)@", re.I
)


def masked_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``**`` (an error message, a log line)."""
    return _URL_IN_TEXT.sub(lambda found: f"{found['scheme']}{found['user']}:**@", text)


def kombu_connection(url: str, timeout: float, ssl: dict[str, Any] | None = None) -> Connection:
    """A kombu connection to ``url`` (not yet connected) that gives up within ``timeout`` seconds.

    It reads messages with the platform's frame reader (:mod:`workers.frames`):
    bodies stay the bytes that arrived. ``ssl``: the TLS options of an
    ``amqps://`` URL (:func:`config.tls.broker_ssl_options`; a copy is used).
    """
    return Connection(
        url,
        connect_timeout=timeout,
        ssl=dict(ssl) if ssl else bool(ssl),
        transport_options=dict(TOLERANT_TRANSPORT_OPTIONS),
    )


def settings_connection(settings: Settings, timeout: float | None = None) -> Connection:
    """A kombu connection (not yet connected) to the broker of ``settings``, with their TLS options.

    ``timeout`` defaults to the settings' publish timeout.
    """
    return kombu_connection(
        settings.broker_url,
        settings.publish_timeout if timeout is None else timeout,
        broker_ssl_options(settings),
    )


def reading_connection(app: Any) -> Connection:
    """A connection to ``app``'s broker for tools that read messages (browse, replay, export).

    Bodies stay the bytes that arrived and properties that are not UTF-8 are
    tolerated (:mod:`workers.frames`); publishes on it are confirmed as usual.
    """
    return app.connection_for_write(transport_options=dict(TOLERANT_TRANSPORT_OPTIONS))


def amqp_connection(
    url: str | Connection, timeout: float, ssl: dict[str, Any] | bool | None = None
) -> amqp.Connection:
    """A connected raw py-amqp connection to ``url`` (an AMQP URL or a kombu connection).

    A failover list (``amqp://a;amqp://b``, or a kombu connection made from
    one) is tried in order, from the node the kombu connection is on; the
    first node that accepts the connection is used, each given ``timeout``.
    TLS: ``ssl`` (:func:`config.tls.broker_ssl_options`), else the kombu
    connection's own (Celery's ``broker_use_ssl``), else ``amqps://`` alone
    (the system's CAs); each node's certificate is checked against its own host.

    Raises:
        PublishError: no node can be reached (the message masks the passwords).
    """
    if isinstance(url, Connection):
        current = url.as_uri(include_password=True)
        alternates = [current, *(alt for alt in url.alt if Connection(alt).as_uri(True) != current)]
        ssl = url.ssl if ssl is None else ssl
    else:
        alternates = url.split(";")
    problems = []
    for alternate in alternates:
        parsed = Connection(alternate)
        try:
            return open_node(parsed, timeout, ssl)
        except (OSError, amqp.exceptions.AMQPError) as exc:
            problems.append(f"{masked_url(parsed)}: {describe_connect_error(exc)}")
    raise PublishError(f"could not connect to the broker at {'; '.join(problems)}")


def open_node(node: Connection, timeout: float, ssl: dict[str, Any] | bool | None = None) -> amqp.Connection:
    """A connected raw py-amqp connection to the one node of ``node`` (with :func:`node_ssl_options`).

    Raises:
        OSError, amqp.exceptions.AMQPError: the node did not accept the connection.
    """
    tls = node_ssl_options(ssl, node)
    connection = amqp.Connection(
        f"{node.hostname or '127.0.0.1'}:{node.port or (AMQPS_PORT if tls else AMQP_PORT)}",
        userid=node.userid or "guest",
        password=node.password or "guest",
        virtual_host=node.virtual_host or "/",
        connect_timeout=timeout,
        frame_handler=tolerant_frame_handler,
        ssl=tls,
    )
    connection.connect()
    return connection


def node_ssl_options(ssl: dict[str, Any] | bool | None, node: Connection) -> dict[str, Any] | bool:
    """The TLS options for one node of a failover list: a copy naming that node's host, or False.

    ``amqps://`` without options is TLS with the system's CAs and host-name checking.
    """
    scheme_tls = str(node.transport_cls).lower() == "amqps" or node.ssl is True
    if not ssl and not scheme_tls:
        return False
    options: dict[str, Any] = (
        dict(ssl) if isinstance(ssl, dict) else {"cert_reqs": _ssl.CERT_REQUIRED, "server_hostname": None}
    )
    if "server_hostname" in options:
        # The host checked is the one connected to (kombu may have written another node's here).
        options["server_hostname"] = node.hostname or "127.0.0.1"
    return options


def describe_connect_error(exc: BaseException) -> str:
    """What went wrong connecting, in one line: a failed TLS check says which and what to set.

    ``exc`` may wrap the error (kombu's ``OperationalError``); its causes are looked through.
    """
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        if isinstance(cause, _ssl.SSLError):
            exc = cause
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, _ssl.SSLCertVerificationError):
        return (
            f"TLS: the broker's certificate was not accepted ({exc.verify_message}); "
            "check PLATFORM_BROKER_TLS_CA and the host name in the URL"
        )
    if isinstance(exc, _ssl.SSLEOFError | _ssl.SSLZeroReturnError):
        return (
            "TLS handshake failed: the broker closed the connection (does it want a client "
            "certificate, PLATFORM_BROKER_TLS_CERT?)"
        )
    if isinstance(exc, _ssl.SSLError):
        reason = exc.reason or exc.__class__.__name__
        return f"TLS handshake failed ({reason}); is it a TLS port, and does it want a client certificate?"
    return masked_text(str(exc))


def close_quietly(closable: Any) -> None:
    """Close a channel or connection, ignoring that it may already be broken."""
    try:
        closable.close()
    except Exception:  # noqa: BLE001 - closing something an error already closed
        pass


# ------------------------------------------------------------------ topology


class TopologyConflict(RuntimeError):
    """A queue or exchange exists with other arguments than the topology says."""


def declare_topology(connection: Connection, topology: Topology) -> int:
    """Declare every exchange and queue of ``topology`` (idempotent).

    On a cluster, a classic queue (a DLQ, the delayed catch-all) lives on one
    node, and while that node is down RabbitMQ answers its declare with
    ``NOT_FOUND - home node ... is down`` (while it stops gracefully: ``... process
    is stopped by supervisor``). That queue (and its bindings) is
    skipped with a warning, so a worker that failed over to another node
    still starts consuming; a publish to it meanwhile comes back unroutable
    (the lifecycle requeues the message, nothing is lost).

    Returns:
        How many queues were declared.

    Raises:
        TopologyConflict: RabbitMQ holds a queue of that name with other
            arguments (for example a classic queue where a quorum one is
            wanted); the message names it and says how to resolve it.
    """
    channel = connection.channel()
    unavailable: set[str] = set()
    try:
        for exchange in topology.exchanges():
            exchange(channel).declare()
        for destination, source, routing_key in topology.exchange_bindings():
            channel.exchange_bind(destination=destination, source=source, routing_key=routing_key)
        queues = topology.all_queues()
        for queue in queues:
            try:
                queue(channel).declare()
            except PreconditionFailed as exc:
                raise TopologyConflict(
                    f"queue {queue.name!r} already exists with different arguments ({exc.reply_text}); "
                    "drain and delete it, or change it with a RabbitMQ policy"
                ) from None
            except NotFound as exc:
                if not any(text in str(exc.reply_text) for text in (HOME_NODE_DOWN, HOME_NODE_STOPPING)):
                    raise
                logger.warning(
                    "queue %s is not available (its home node is down): %s", queue.name, exc.reply_text
                )
                unavailable.add(queue.name)
                close_quietly(channel)  # a failed declare closes the channel
                channel = connection.channel()
        for queue_name, source, routing_key in topology.queue_bindings():
            if queue_name not in unavailable:
                channel.queue_bind(queue_name, source, routing_key)
        return len(queues) - len(unavailable)
    finally:
        close_quietly(channel)


# -------------------------------------------------------------------- queues


class QueueMissing(LookupError):
    """A queue the caller needs does not exist on the broker."""


@dataclass(frozen=True)
class QueueDepth:
    """A queue's ready messages and consumers, from a passive declare."""

    name: str
    messages: int
    consumers: int


def _open_channel(connection: Any) -> Any:
    """A channel of a kombu or py-amqp connection (kombu's is connected first)."""
    if isinstance(connection, Connection):
        # One try per node of a failover list (kombu moves to the next on each failure).
        connection.ensure_connection(max_retries=max(1, len(connection.alt)))
    return connection.channel()


def require_queue(connection: Any, name: str, hint: str = "") -> QueueDepth:
    """The depth of queue ``name`` (a passive declare on a channel of its own).

    A passive declare of a missing queue closes the channel it ran on, so it
    never runs on a channel the caller still needs.

    Raises:
        QueueMissing: the queue does not exist; the message names it (and ``hint``).
    """
    channel = _open_channel(connection)
    try:
        _, messages, consumers = channel.queue_declare(queue=name, passive=True)
    except NotFound:
        raise QueueMissing(f"queue {name!r} does not exist{'; ' + hint if hint else ''}") from None
    finally:
        close_quietly(channel)
    return QueueDepth(name, messages, consumers)


def queue_depth(connection: Any, name: str) -> QueueDepth | None:
    """The depth of queue ``name``, or None if it does not exist."""
    try:
        return require_queue(connection, name)
    except QueueMissing:
        return None


def browse_messages(connection: Any, name: str, limit: int | None = SCAN_LIMIT) -> Iterator[amqp.Message]:
    """The messages of queue ``name``, head first, without consuming any.

    Each message is fetched unacknowledged on one channel; closing the channel
    (when the iteration ends or is abandoned) gives all of them back, in their
    places. On a classic queue this leaves only the ``redelivered`` flag; on a
    quorum queue it counts as a delivery (so browse only classic DLQs, or
    delay queues whose messages are never delivered to a worker from there).
    Only the messages there when browsing starts are read.

    Raises:
        QueueMissing: the queue does not exist.
    """
    count = require_queue(connection, name).messages
    wanted = count if limit is None else min(count, limit)
    channel = _open_channel(connection)
    try:
        for _ in range(wanted):
            message = channel.basic_get(name, no_ack=False)
            if message is None:
                return
            yield message
    finally:
        close_quietly(channel)


def message_headers(message: amqp.Message) -> dict[str, Any]:
    """The application headers of a raw py-amqp message (a new dict)."""
    return dict(message.properties.get("application_headers") or {})


# --------------------------------------------------------- pipelined confirms


class ConfirmWindow:
    """Publish many messages on one confirm-mode channel, with at most ``window`` unconfirmed.

    Waiting for each confirm costs a round trip per message; here many are in
    flight and their confirms (acks, nacks, returns of unroutable mandatory
    publishes) are counted as they arrive. Usage::

        window = ConfirmWindow(connection, channel, timeout=5)
        for item in items:
            window.publish(message, exchange, routing_key, item=item.id)
        window.wait_all()
        window.nacked, window.returned  # what the broker refused
    """

    def __init__(
        self,
        connection: amqp.Connection,
        channel: amqp.Channel,
        timeout: float,
        window: int = 500,
        select: bool = True,
        first_tag: int = 1,
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.timeout = timeout
        self.window = window
        self.next_tag = first_tag
        #: Delivery tag -> the item published with it (a task id, an event...).
        self.outstanding: dict[int, Any] = {}
        #: Items the broker refused (basic.nack).
        self.nacked: list[Any] = []
        #: Routing keys of messages returned as unroutable (mandatory publishes).
        self.returned: list[str] = []
        #: Messages published so far.
        self.sent = 0
        if select:
            channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: self._settle(tag, multiple, nacked=False))
        channel.events["basic_nack"].add(lambda tag, multiple: self._settle(tag, multiple, nacked=True))
        channel.events["basic_return"].add(self._on_return)

    @property
    def confirmed(self) -> int:
        """Messages the broker has settled (acked or nacked) so far."""
        return self.sent - len(self.outstanding)

    def publish(
        self, message: amqp.Message, exchange: str, routing_key: str, item: Any = None, **kw: Any
    ) -> None:
        """Publish ``message``, first waiting while ``window`` messages are unconfirmed."""
        while len(self.outstanding) >= self.window:
            self._wait_for_one()
        self.channel.basic_publish(message, exchange, routing_key, **kw)
        self.outstanding[self.next_tag] = item
        self.next_tag += 1
        self.sent += 1

    def wait_all(self) -> None:
        """Return once every published message is settled.

        Raises:
            PublishError: the broker settled nothing for ``timeout`` seconds.
        """
        while self.outstanding:
            self._wait_for_one()

    def _wait_for_one(self) -> None:
        deadline = time.monotonic() + self.timeout
        before = len(self.outstanding)
        while len(self.outstanding) == before:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(
                    f"{before} messages not confirmed within {self.timeout}s; they may or may not have "
                    "reached the broker"
                )
            try:
                self.connection.drain_events(timeout=remaining)
            except TimeoutError:
                continue

    def _settle(self, tag: int, multiple: bool, nacked: bool) -> None:
        tags = [t for t in self.outstanding if t <= tag] if multiple else [tag]
        for settled in tags:
            item = self.outstanding.pop(settled, None)
            if nacked and item is not None:
                self.nacked.append(item)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self.returned.append(routing_key)
