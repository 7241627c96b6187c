"""Queue depths and consumers from the RabbitMQ management API (no CLI, no HTTP server).

One GET of ``/api/queues/<vhost>`` gives every queue's ready and unacked
messages and its consumers; :func:`classify` says what each queue is to the
platform (work, retry, dead-letter, delay, subscriber, or the broker's/Celery's
own).
The management API refreshes these numbers every few seconds
(``collect_statistics_interval``, 5 s by default), so they lag a little.
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from config.topology import Topology
from workers.ops.management_api import ManagementError, call

#: Queues that belong to Celery or RabbitMQ, not to the platform's work.
INTERNAL_PREFIXES = ("celery.pidbox", "celeryev.", "amq.", "celery@")
INTERNAL_SUFFIXES = (".reply.celery.pidbox", ".celery.pidbox")

WORK = "work"
RETRY = "retry"
DEAD_LETTER = "dead-letter"
SUBSCRIBER = "subscriber"
#: The shared delay levels of delayed tasks and their unroutable catch-all: no
#: worker consumes them, so their depth is no consumer's backlog.
DELAY = "delay"
INTERNAL = "internal"

#: The queues of kind :data:`DELAY`: ``platform.delay.0..27`` and ``platform.delayed.unroutable``
#: (the same in every topology: the levels are shared by all work queues).
DELAY_QUEUES = frozenset(queue.name for queue in Topology(()).delay_queues())


@dataclass(frozen=True)
class QueueStat:
    """One queue as the management API sees it."""

    name: str
    #: work, retry, dead-letter, delay, subscriber or internal.
    kind: str
    #: The work queue a retry or dead-letter queue serves (the queue itself otherwise,
    #: a delay level too: its messages go to many work queues).
    work_queue: str
    ready: int
    unacked: int
    consumers: int


def classify(name: str, topology: Topology) -> tuple[str, str]:
    """(kind, work queue) of queue ``name`` under ``topology``."""
    if name in DELAY_QUEUES:
        return DELAY, name
    for work_queue in topology.work_queues:
        if name == work_queue.name:
            return WORK, name
        if name == work_queue.dead_letter_queue:
            return DEAD_LETTER, work_queue.name
        if name in work_queue.retry_queues:
            return RETRY, work_queue.name
    if name.startswith(INTERNAL_PREFIXES) or name.endswith(INTERNAL_SUFFIXES):
        return INTERNAL, name
    if name.endswith(".dlq"):
        return DEAD_LETTER, name[: -len(".dlq")]
    return SUBSCRIBER, name


def queue_stats(raw: Iterable[Mapping[str, Any]], topology: Topology) -> list[QueueStat]:
    """Typed stats from the management API's queue objects, sorted by name (pure)."""
    stats = []
    for queue in raw:
        name = str(queue.get("name", ""))
        kind, work_queue = classify(name, topology)
        stats.append(
            QueueStat(
                name=name,
                kind=kind,
                work_queue=work_queue,
                ready=int(queue.get("messages_ready") or 0),
                unacked=int(queue.get("messages_unacknowledged") or 0),
                consumers=int(queue.get("consumers") or 0),
            )
        )
    return sorted(stats, key=lambda stat: stat.name)


def vhost_of(broker_url: str) -> str:
    """The vhost of an AMQP URL (``/`` when the path is empty); of the first of a failover list."""
    path = urllib.parse.urlparse(broker_url.split(";")[0]).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def fetch_queues(
    management_url: str, vhost: str, timeout: float = 5.0, context: ssl.SSLContext | None = None
) -> list[dict[str, Any]]:
    """The management API's queue objects of ``vhost``.

    Args:
        management_url: the API root, e.g. ``http://user:pass@host:15672/api/``
            (credentials in the URL; ``guest:guest`` when there are none), or
            several joined by ``;`` (every node of a cluster): the first that
            answers is used.
        vhost: the virtual host.
        timeout: seconds for each node's request.
        context: verifies an ``https://`` API (:func:`config.tls.https_context`).

    Raises:
        ManagementError: no node answered, or one refused or sent no JSON.
    """
    columns = "name,messages_ready,messages_unacknowledged,consumers"
    path = f"queues/{urllib.parse.quote(vhost, safe='')}?columns={columns}"
    found = call(management_url, "GET", path, timeout=timeout, context=context)
    if not isinstance(found, list):
        raise ManagementError(f"management API: GET /queues answered {type(found).__name__}, not a list")
    return found
