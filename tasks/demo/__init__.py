"""A guided tour: ``python -m tasks.demo`` (or ``make demo``).

Sends sample work to every service queue, waits until it has settled, and
prints what happened: which tasks completed, which were retried, and what sits
in which dead-letter queue with its ``x-error-class``. Running workers are
needed (``make up`` starts them).

The sample work shows each outcome of the lifecycle:

- successes on every queue;
- a payment whose gateway times out twice (``TransientError``), then succeeds;
- a reservation of a sold-out item (a business rule): dead-lettered at once;
- a confirmation to an address without ``@`` (an unexpected ``ValueError``):
  retried twice as an unknown error, then dead-lettered;
- with the seed's subscriptions, the order saga: six orders that end
  confirmed, cancelled after compensation, cancelled on payment, timed out,
  and dead-lettered (:mod:`.saga`).

How "settled" is seen: a task counts as completed once its id is in the
idempotency store the workers write (``PLATFORM_STATE_URL``), and as
dead-lettered once it is in ``<queue>.dlq``. With ``PLATFORM_IDEMPOTENCY=false``
nothing records completions, so a task not dead-lettered counts as completed
once its work and delay queues have stayed empty for a few polls. Dead letters
are read without being consumed (:func:`workers.ops.dlq.browse`), so the demo
leaves them for ``make dlq-list`` and Flower.

The modules, one job each:

- :mod:`.samples`: the sample work, as data (:class:`~.samples.Sample`);
- :mod:`.follow`: sending it, publishing the event, polling until it settled;
- :mod:`.report`: everything the reader sees;
- :mod:`.saga`: the order saga's part of the tour and its table;
- :mod:`.__main__`: the command line (exit 0 when all went as expected, else 1).
"""

from __future__ import annotations
