"""Where one queue's workers run: the interface every actuator implements.

Local processes, a Compose service, ...: the engine asks a pool how many
workers a queue has and tells it how many it should have.
"""

from __future__ import annotations

from typing import Protocol


class Pool(Protocol):
    """Where one queue's workers run (local processes, a Compose service, ...)."""

    def workers(self, queue: str) -> int: ...  # workers this pool runs for queue now

    def resize(self, queue: str, desired: int, reason: str) -> None: ...
