"""How messages are handled, in wings that show its jobs.

::

    workers/
      errors.py     the exceptions tasks raise (TransientError, PermanentError...)
      broker.py     the plumbing every wing shares: connections, passive declares,
                    browsing without consuming, pipelined confirms
      delivery/     one delivery from receipt to settlement
        consumer      receipt: refuse what can't run (DLQ with a reason), poison check
        receipt       what a task message's headers and body must look like (pure)
        frames        a frame reader that survives message properties that are not UTF-8
        task          the base of every @app.task: idempotency, classify, verdict
        request       the main process's side of a failure: carry the verdict out
        lifecycle     the one place that acks, republishes with confirms, dead-letters
        classify, backoff, verdict, headers   pure policy: no I/O
        idempotency   the completion store (SQLite, PostgreSQL)
        batch         apply_many: pipelined enqueue
        publishing    Celery's AMQP helper: a task not yet due goes to the delay levels
        delays        delays in units and routing keys through the levels (pure)
        lateness      how late delayed tasks arrive, per worker, in the state store
        bootsteps/    the topology declared when a worker connects; lateness counted
      events/       facts between services: envelope, schemas, blobs, publisher, receive
      sagas/        sagas across services: definitions as data and the pure decision, the saga
                    log (optimistic concurrency), the transactional outbox and its relay step,
                    broker-held deadlines, failed compensations
      scaling/      scaling on queue depth: the due-backlog signal, limits, the pure
                    decision, the engine loop, the Pool interface, the local and Compose
                    pools, Kubernetes manifests with KEDA
      ops/          what operators run
        dlq/          dead letters: letters, stats, filters, browsing, replay steps and
                      loop, refail watch, records (export, audit), actions (replay or
                      purge, then audit: what the CLI and Flower both call)
        backfill      the event log into a new subscriber's queue
        event_status  where one event stands at each subscriber
        queue_stats, metrics, alerts   depths from the management API, Prometheus, webhooks
        scale_state   the scaling engine's last decisions in the state store
        text          how the tools show ages and header values
        cli/          ``celery -A config topology|dlq|pubsub|delays|scale`` (one module per group)
        cluster/      a local 3-node RabbitMQ cluster (make cluster-*): layout, processes,
                      up/down/status and faults (kill, stop/start, freeze/thaw, leader)
        flower/       the Flower launcher and the platform's pages in Flower

Imports point one way: ``ops -> sagas -> events | scaling -> delivery -> broker, errors -> config``
(events and scaling side by side; scaling imports no delivery)
(``make lint`` checks it with import-linter). ``tasks`` may import any wing;
no wing imports ``tasks``.
"""
