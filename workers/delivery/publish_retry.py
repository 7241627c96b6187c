"""Publishing a task again, within its timeout, after the broker refused it or its node went away.

A confirmed publish ends in one of three ways: the broker confirms it
(``basic.ack``), refuses it (``basic.nack``; a mandatory publish nobody can
route comes back as ``NO_ROUTE``), or the connection breaks or the confirm does
not come in time. kombu's retry (``task_publish_retry_policy``) takes the next
node of a failover list after a broken connection, but counts a nack as one
too and sends again at once: measured on the local cluster, when the leader of
``orders`` was SIGKILLed, the three tries of one ``delay()`` came within 0.1 s
and each was nacked by the node it reached (the queue had no leader for about
0.4 s): 1-4 publishes per kill raised ``PublishError``.

:func:`retryable` says which failures a later try may get past (a nack, a
broken connection, a confirm that did not come); :func:`pauses` how long to
wait before each. :class:`~workers.delivery.task.PlatformTask` publishes
again, with the same task id, while its publish timeout has time left: a copy
that did reach a queue is absorbed by idempotency, and a publish returns only
on the broker's ack of the last copy sent, so there is never a false confirm.
A refusal that every try would get (unroutable, access refused, a missing
exchange: channel errors) raises ``PublishError`` at once, as before.
"""

from __future__ import annotations

from collections.abc import Iterator

from amqp.exceptions import ChannelError, ConnectionError, MessageNacked, RecoverableConnectionError

#: First pause before publishing again, and the longest, in seconds.
FIRST_PAUSE, LONGEST_PAUSE = 0.1, 1.0


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from (``__cause__``, else ``__context__``), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def retryable(exc: BaseException) -> bool:
    """Whether a failed publish may be confirmed if it is sent again.

    Yes for a nack, a broken or refused connection, a timeout (the node died,
    froze, or the queue had no leader yet); no for channel errors (the route,
    the exchange or the permissions are wrong for every try) and for
    connection errors the broker closed on purpose (``ACCESS_REFUSED``...).
    """
    for cause in causes(exc):
        if isinstance(cause, MessageNacked | RecoverableConnectionError):
            return True
        if isinstance(cause, ChannelError | ConnectionError):
            return False
    return any(isinstance(cause, OSError) for cause in causes(exc))


def reason(exc: BaseException) -> str:
    """What went wrong, in words: ``exc``'s text, else the innermost cause's (kombu's are often empty)."""
    if str(exc):
        return str(exc)
    innermost = list(causes(exc))[-1]
    return str(innermost) or type(innermost).__name__


def pauses(first: float = FIRST_PAUSE, longest: float = LONGEST_PAUSE) -> Iterator[float]:
    """Pauses before each new try: ``first``, doubling, never over ``longest``."""
    pause = first
    while True:
        yield pause
        pause = min(pause * 2, longest)
