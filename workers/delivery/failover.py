"""Which node of a failover list a worker's next connection tries first.

kombu tries a failover list (``amqp://a;amqp://b;amqp://c``) from its first URL
every time a connection is made, and a reconnecting Celery worker makes several:
one to consume, then one for task events. When the first node is frozen
(SIGSTOP, a hung VM, a long GC) it still accepts TCP but never answers the AMQP
handshake, so each of those connections waited ``broker_connection_timeout``
(2 s) there before kombu moved on, and the worker consumed again seconds later
than it could.

:class:`NodeMemory` remembers, for one worker process, the node its consuming
connection last reached and the nodes whose connection broke, and
:meth:`NodeMemory.ordered` rewrites the list for the next connection: the node
that answered last first, then the others in their order, nodes that broke last
(the oldest break first). Every node stays in the list, so a worker still tries
them all; only the order changes. The consumer (:mod:`workers.delivery.consumer`)
uses it for its consuming and its event connection, so after a failover the
event connection goes straight to the node the worker consumes from.

Rejected:

- kombu's ``failover_strategy`` (Celery's ``broker_failover_strategy``) picks
  only the nodes after the first attempt: kombu always starts at the list's
  first URL and skips the strategy's first item;
- ``shuffle``: a frozen node would still come first a third of the time, and
  workers would spread over nodes for no reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

#: Ports kombu's py-amqp transport uses when a URL names none.
DEFAULT_PORTS = {"amqp": 5672, "pyamqp": 5672, "amqps": 5671}


def node_of_url(url: str) -> str:
    """``host:port`` of one AMQP URL (the scheme's default port when it names none)."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or 'localhost'}:{port or DEFAULT_PORTS.get(parts.scheme, 5672)}"


def node_of_connection(connection: Any) -> str:
    """``host:port`` of the node a kombu connection is on (after any failover switch)."""
    scheme = "amqps" if getattr(connection, "ssl", None) else "amqp"
    port = getattr(connection, "port", None) or DEFAULT_PORTS[scheme]
    return f"{connection.hostname or 'localhost'}:{port}"


def split_urls(urls: str | Sequence[str]) -> list[str]:
    """The URLs of a failover list given as ``a;b;c`` or as a sequence."""
    parts = urls.split(";") if isinstance(urls, str) else list(urls)
    return [part.strip() for part in parts if part and part.strip()]


def ordered(urls: Sequence[str], preferred: str | None, broken: Sequence[str]) -> list[str]:
    """``urls`` with the ``preferred`` node first and the ``broken`` ones last.

    Args:
        urls: the failover list, in its configured order.
        preferred: ``host:port`` of the node that answered last (None: none yet).
        broken: ``host:port`` of nodes whose connection broke, the oldest break first.

    Returns:
        The same URLs: the preferred node's (unless it broke since), the others
        in their configured order, then the broken nodes' in the order they broke.
    """
    rank = {node: index for index, node in enumerate(broken)}

    def key(position: int) -> tuple[int, int, int]:
        node = node_of_url(urls[position])
        if node in rank:
            return (2, rank[node], position)
        if node == preferred:
            return (0, 0, position)
        return (1, 0, position)

    return [urls[position] for position in sorted(range(len(urls)), key=key)]


class NodeMemory:
    """The node a worker process last reached and the nodes that broke under it."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        #: ``host:port`` of the node the last connection reached.
        self.preferred: str | None = None
        #: ``host:port`` -> when its connection broke (monotonic seconds).
        self.broken: dict[str, float] = {}

    def ordered(self, urls: str | Sequence[str]) -> str:
        """The failover list for the next connection, joined by ``;`` (see :func:`ordered`)."""
        by_age = sorted(self.broken, key=self.broken.__getitem__)
        return ";".join(ordered(split_urls(urls), self.preferred, by_age))

    def reached(self, connection: Any) -> None:
        """A connection reached its node: the next connection tries that node first."""
        node = node_of_connection(connection)
        self.preferred = node
        self.broken.pop(node, None)

    def lost(self, connection: Any) -> None:
        """A connected node stopped answering or closed: the next connections try it last."""
        node = node_of_connection(connection)
        self.broken[node] = self._clock()
        if self.preferred == node:
            self.preferred = None
