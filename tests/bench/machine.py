"""What the suite ran on: cores, memory, load, RabbitMQ and library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import psutil

from tests.support.broker import management

#: Libraries whose versions the results record.
LIBRARIES = ("celery", "kombu", "amqp", "dramatiq", "pika", "billiard")


def describe() -> dict[str, Any]:
    """Facts about this machine and broker (RabbitMQ fields are empty if unreachable)."""
    try:
        overview = management("GET", "overview", timeout=5)
    except Exception:  # noqa: BLE001 - the broker's version is informative only
        overview = {}
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "rabbitmq": overview.get("rabbitmq_version"),
        "erlang": overview.get("erlang_version"),
        "libraries": versions,
    }
