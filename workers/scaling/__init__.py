"""Scaling worker pools on queue depth: the signal and the decision (the actuators come later).

::

    signal   each work and subscriber queue's due backlog (ready + unacked), its
             consumers and the delayed work falling due; retry, dead-letter and
             delay-level queues are not due work
    limits   one queue's bounds, thresholds, steps, cooldown and window, from the settings (pure)
    policy   decide(signal, current workers, limits, history, now): the desired count
             and its reason (pure: no I/O, no clock)

The package reads the broker only through a reader its caller hands in
(``workers.ops.metrics.management_counts``): the management API reader is
the operators' (:mod:`workers.ops.queue_stats`), and ``ops`` sits above this
package. Nothing here starts or stops a worker yet: the metrics export the
decision as advice (``platform_scale_desired_workers``).
"""
