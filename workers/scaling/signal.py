"""The scaling signal: each work and subscriber queue's due backlog, from the broker's own counts.

What a queue's workers have to do, and what they don't::

    <q>               ready + unacked   due backlog of <q>: the work its pool must finish
    <q>.retry.N       backing off       not due: back in <q> after its backoff, on its own
    <q>.dlq           dead letters      not due: no worker takes them
    platform.delay.*  delayed tasks     not due yet: only "falls due soon" counts (scale to zero)

Unacknowledged messages count as due: a worker holds them, and scaling that
worker away would redeliver them (KEDA's RabbitMQ scaler over AMQP counts
ready messages only, so it scales away busy workers and flaps;
kedacore/keda#356). Some of them wait in a worker's prefetch and have not
started; the management API can't tell those apart.

The counts are the RabbitMQ management API's (``/api/queues/<vhost>``, as
:mod:`workers.ops.queue_stats` reads them): they include unacknowledged
messages, which a passive declare does not see, but RabbitMQ refreshes them
every few seconds (``collect_statistics_interval``, 5 s by default), so the
signal lags that much (a quorum queue's unacked count too). Reading them is the operators' job and lives in ``workers.ops``, above
this package; the caller hands a reader in (:data:`CountsSource`), and
:func:`read_signals` turns its answer into one :class:`QueueSignal` per work
and subscriber queue of the topology. A broker that does not answer is :class:`SignalUnavailable`.

Rejected: a ``basic_get`` peek at a queue's head for the age of its oldest
message. On a quorum queue every peek is a delivery and spends the message's
delivery budget (``x-delivery-limit``); an age needs a publish-time stamp and
another way to read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


class SignalUnavailable(RuntimeError):
    """The broker (its management API) did not answer, so there is no signal to act on."""


class QueueCounts(Protocol):
    """One queue's counts as the management API reports them (``workers.ops.queue_stats.QueueStat``)."""

    @property
    def name(self) -> str: ...

    @property
    def ready(self) -> int: ...

    @property
    def unacked(self) -> int: ...

    @property
    def consumers(self) -> int: ...


#: Reads every queue's counts of the platform's vhost now.
#: Raises :class:`SignalUnavailable` when the broker does not answer.
CountsSource = Callable[[], Iterable[QueueCounts]]


@dataclass(frozen=True)
class QueueSignal:
    """What one work or subscriber queue asks of its pool, at one moment."""

    queue: str
    #: Messages waiting for a worker.
    ready: int
    #: Messages a worker holds and has not acknowledged (running, or prefetched).
    unacked: int
    #: Consumers of the queue: one per worker consuming it (a worker's pool processes share one).
    consumers: int
    #: Seconds until the soonest delayed task falls due (negative when late); None when
    #: none is known to wait. The delay levels are shared by every queue and are read
    #: without their targets here, so this is the soonest of all queues': it can only
    #: keep a pool from scaling to zero too early, never make it grow.
    delayed_due_in: float | None = None
    #: Median seconds one task of the queue takes; None while unknown (nothing records
    #: task times yet), which leaves a latency target unused.
    median_task_seconds: float | None = None
    #: Workers of the queue that died and were started again within the stabilisation
    #: window (the pool's restarts; 0 when the pool can't tell). A poison message kills
    #: the worker that runs it at each delivery, and the management API can't tell it from
    #: due work, so deaths are how poison shows: the policy does not grow a dying pool.
    recent_deaths: int = 0

    @property
    def due_backlog(self) -> int:
        """Ready plus unacknowledged: the work this queue's workers have not finished."""
        return self.ready + self.unacked

    @property
    def idle(self) -> bool:
        """Nothing ready and nothing unacknowledged."""
        return self.ready == 0 and self.unacked == 0


def queue_signals(
    counts: Iterable[QueueCounts], queues: Iterable[str], delayed_due_in: float | None = None
) -> dict[str, QueueSignal]:
    """One signal for each of ``queues`` that the broker reported (pure).

    Retry, dead-letter, delay-level and foreign queues in ``counts`` are left
    out: none of them is due work. A queue the broker does not have (not
    declared yet) gets no signal.

    Args:
        counts: every queue's counts, as the management API reported them.
        queues: the work and subscriber queues (``Topology.names``: its work
            queues include the subscriber queues). Names, not the topology, so
            that this module needs nothing that builds kombu objects.
        delayed_due_in: seconds until the soonest delayed task falls due, if any.

    Returns:
        Signals by queue name, in the order of ``queues``.
    """
    reported = {count.name: count for count in counts}
    return {
        name: QueueSignal(
            queue=name,
            ready=reported[name].ready,
            unacked=reported[name].unacked,
            consumers=reported[name].consumers,
            delayed_due_in=delayed_due_in,
        )
        for name in queues
        if name in reported
    }


def read_signals(
    source: CountsSource, queues: Iterable[str], delayed_due_in: float | None = None
) -> dict[str, QueueSignal]:
    """The signal of each of ``queues``, read from the broker now.

    Args:
        source: reads the management API's counts (``workers.ops.metrics.management_counts``).
        queues: the work and subscriber queues (``Topology.names``).
        delayed_due_in: seconds until the soonest delayed task falls due, if any.

    Raises:
        SignalUnavailable: the broker or its management API did not answer.
    """
    return queue_signals(list(source()), queues, delayed_due_in)
