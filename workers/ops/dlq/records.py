"""What is written down: dead letters as JSON records (export), and who did what to a DLQ (audit).

The audit log is ``<run dir>/dlq-audit.jsonl``, one JSON object a line, also
logged; :mod:`workers.ops.dlq.actions` writes a record for every replay and
purge, whichever tool ran it.
"""

from __future__ import annotations

import base64
import getpass
import json
import logging
import socket
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workers.delivery.headers import ERROR_TRACEBACK
from workers.ops.dlq.letters import DeadLetterMessage
from workers.ops.text import json_safe

logger = logging.getLogger(__name__)

#: File in the run folder that records every replay and purge, one JSON object a line.
AUDIT_FILE = "dlq-audit.jsonl"


def letter_record(letter: DeadLetterMessage, traceback_limit: int | None = None) -> dict[str, Any]:
    """A JSON-ready dict of ``letter``: body as UTF-8 text, or base64 when it is not UTF-8.

    Args:
        letter: the dead letter.
        traceback_limit: keep only the last this many characters of ``x-error-traceback``.
    """
    try:
        body, encoding = letter.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(letter.body).decode(), "base64"
    headers = json_safe(letter.headers)
    if traceback_limit is not None and ERROR_TRACEBACK in headers:
        headers[ERROR_TRACEBACK] = str(headers[ERROR_TRACEBACK])[-traceback_limit:]
    at = letter.dead_lettered_at
    return {
        "position": letter.position,
        "task_id": letter.task_id,
        "task_name": letter.task_name,
        "error_class": letter.error_class,
        "error_type": letter.error_type,
        "group": letter.group,
        "dead_lettered_at": at.isoformat() if at else None,
        "replay_count": letter.replay_count,
        "properties": json_safe(letter.properties),
        "headers": headers,
        "body": body,
        "body_encoding": encoding,
    }


def export_lines(letters: Iterable[DeadLetterMessage]) -> Iterator[str]:
    """One JSON line per dead letter (see :func:`letter_record`)."""
    for letter in letters:
        yield json.dumps(letter_record(letter), sort_keys=True)


def operator() -> str:
    """Who runs this process: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def audit(run_dir: str | Path, action: str, queue: str, who: str, **details: Any) -> dict[str, Any]:
    """Record who did what, when, in ``<run_dir>/dlq-audit.jsonl`` and in the log.

    Returns:
        The record written.
    """
    record = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "who": who,
        "action": action,
        "queue": queue,
        **json_safe(details),
    }
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / AUDIT_FILE, "a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")
    logger.info("dlq audit: %s", json.dumps(record, sort_keys=True))
    return record
