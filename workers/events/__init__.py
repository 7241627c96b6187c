"""Events on the worker side: the envelope, schemas, claim-check, publishing, receiving.

Modules, one job each:

- :mod:`~workers.events.envelope`: CloudEvents 1.0 in the AMQP binding, event type names (pure).
- :mod:`~workers.events.schemas`: JSON Schema snapshots and their backward compatibility (pure).
- :mod:`~workers.events.blobs`: the claim-check blob store.
- :mod:`~workers.events.publisher`: publish events with confirms, one or many (pipelined).
- :mod:`~workers.events.receive`: run a CloudEvent delivered to a subscriber queue as the
  subscribing service's handler task, with the whole task lifecycle.

What operators do with events (backfill, where an event stands) is in :mod:`workers.ops`.
"""
