"""Read the ledger the test tasks write (see tests/support/tasks.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    event: str
    task_id: str
    at: float
    extra: str


def read_ledger(path: Path) -> list[Entry]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3:
            entries.append(Entry(parts[0], parts[1], float(parts[2]), parts[3] if len(parts) > 3 else ""))
    return entries


def events(path: Path, event: str, task_id: str | None = None) -> list[Entry]:
    return [e for e in read_ledger(path) if e.event == event and (task_id is None or e.task_id == task_id)]
