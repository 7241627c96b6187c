"""Hand-made Celery protocol 2 messages, so tests know the exact body bytes."""

from __future__ import annotations

import json
import uuid
from typing import Any


def celery_message(
    task: str, args: list[Any] | None = None, task_id: str | None = None
) -> tuple[bytes, dict[str, Any]]:
    """Body bytes and headers of a protocol 2 message for ``task``."""
    task_id = task_id or str(uuid.uuid4())
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([args or [], {}, embed]).encode()
    headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": repr(tuple(args or [])),
        "kwargsrepr": "{}",
        "origin": "tests",
        "ignore_result": False,
    }
    return body, headers


def header(message: Any, name: str) -> Any:
    """A header of a py-amqp message (application headers)."""
    return (message.properties.get("application_headers") or {}).get(name)
