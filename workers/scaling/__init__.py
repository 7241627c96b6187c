"""Scaling worker pools on queue depth: the signal, the decision, the engine and the pools.

::

    signal   each work and subscriber queue's due backlog (ready + unacked), its
             consumers and the delayed work falling due; retry, dead-letter and
             delay-level queues are not due work
    limits   one queue's bounds, thresholds, steps, cooldown and window, from the settings (pure)
    policy   decide(signal, current workers, limits, history, now): the desired count
             and its reason (pure: no I/O, no clock)
    engine   the loop: read the signal, decide per queue, resize the pool; hold on no data
    pool     the Pool interface (workers(queue), resize(queue, desired, reason)), pools by name
    local    the local pool: celery worker processes in the run folder, retired idle
             (cancel_consumer, drain, warm shutdown), restarted when they die
    compose  the Compose pool: a queue's service worker-<queue>, counted with
             ``docker compose ps`` and resized with ``up --scale``
    kubernetes  Kubernetes manifests with a KEDA ScaledObject per queue (pure), with
             names (worker-<queue>), settings_env (the settings a pod needs) and
             yaml_text (plain YAML out)

The package reads the broker only through a reader its caller hands in
(``workers.ops.metrics.management_counts``): the management API reader is
the operators' (:mod:`workers.ops.queue_stats`), and ``ops`` sits above this
package; so does the state store where the engine's decisions go
(:mod:`workers.ops.scale_state`, handed in as a reporter). The command is
``celery -A config scale run|status|manifests`` (:mod:`workers.ops.cli.scale`).
"""
