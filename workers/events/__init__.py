"""Events on the worker side: the envelope, publishing, subscriptions, claim-check, backfill.

Modules, one job each:

- :mod:`~workers.events.envelope`: CloudEvents 1.0 in the AMQP binding, event type names (pure).
- :mod:`~workers.events.publisher`: publish events with confirms, one or many (pipelined).
- :mod:`~workers.events.receive`: run a CloudEvent delivered to a subscriber queue as the
  subscribing service's handler task, with the whole task lifecycle.
- :mod:`~workers.events.blobs`: the claim-check blob store.
- :mod:`~workers.events.compat`: compare JSON Schemas for backward compatibility (pure).
- :mod:`~workers.events.backfill`: replay the event log stream into a subscriber queue.
- :mod:`~workers.events.view`: where one event stands at each subscriber.
"""
