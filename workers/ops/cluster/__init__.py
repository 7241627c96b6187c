"""A local 3-node RabbitMQ cluster beside the machine's own broker, and faults to inject into it.

- :mod:`~workers.ops.cluster.layout`: names, ports and folders of the nodes (pure);
- :mod:`~workers.ops.cluster.nodes`: their processes (start, find by mark, signal, rabbitmqctl);
- :mod:`~workers.ops.cluster.control`: up, down, status, kill/stop/start/freeze/thaw, leader;
- ``python -m workers.ops.cluster``: the command line behind ``make cluster-*``.
"""

from __future__ import annotations
