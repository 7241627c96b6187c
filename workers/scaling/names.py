"""The name of one queue's workers wherever they run: a Compose service, a Kubernetes Deployment (pure)."""

from __future__ import annotations

import re

#: A name every orchestrator accepts (an RFC 1123 label, as Kubernetes Services need).
_WORKER_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def worker_name(queue: str) -> str:
    """``worker-<queue>``, with dots and underscores as dashes (``billing.events`` -> ``worker-billing-events``).

    Raises:
        ValueError: the name would be too long (over 63 characters) or otherwise invalid.
    """
    name = "worker-" + queue.replace(".", "-").replace("_", "-")
    if not _WORKER_NAME.fullmatch(name):
        raise ValueError(f"queue {queue!r} gives {name!r}, not a Kubernetes name (at most 63 characters)")
    return name
