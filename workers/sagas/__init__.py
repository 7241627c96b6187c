"""The saga runtime: definitions as data, the saga log, the outbox and its relay, deadlines.

::

    definition   a saga as data and the pure decision: move, act, or late (no I/O)
    store        saga instances and the saga log in the state store; optimistic concurrency
    outbox       facts and deadlines written in the service's transaction, relayed with confirms
    step         one handler's step: decide, log, emit, relay after commit; deadlines; failed compensations
    relay_step   the worker bootstep that relays what a crash left unsent

A saga's own definition and its services' handlers live in ``tasks`` (the
order saga: :mod:`tasks.saga`). Imports: ``ops -> sagas -> events -> delivery``.
"""
