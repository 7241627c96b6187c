"""The chaos ledger: what was confirmed, what happened to each confirmed task, and what was lost.

Every chaos scenario publishes known task ids with confirms, injects a fault,
waits for the work to settle and then builds a :class:`ChaosLedger` from what
a user could see: the ids the broker confirmed, the side effects in the state
store (``chaos_effects``, written with the completion mark), the dead letters
in the DLQs (with their ``x-error-class``) and the attempts the task recorded.

- *lost* = confirmed, yet neither processed nor dead-lettered: must be 0;
- *redelivered* = tasks attempted more than once (a fault hit them mid-run);
- *duplicate effects* = tasks whose side effect committed twice: must be 0
  (idempotency absorbs every redelivery after a commit);
- *refused* = publishes that raised ``PublishError`` (visible, not silent); such
  a task may still have arrived (at-least-once), which is counted, not an error.

Each ledger is written as JSON to ``results/chaos/<scenario>.json`` (or
``CHAOS_RESULTS``) and summed up in one line (printed at the end of the run).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.ledger import events

#: The table of side effects that ``chaos.work`` writes, one row per execution that committed.
EFFECTS_TABLE = "chaos_effects"

#: The project root (results go under it unless CHAOS_RESULTS says otherwise).
ROOT = Path(__file__).resolve().parents[2]
#: One summary line per scenario of this run, printed by tests/chaos/conftest.py.
SUMMARIES: list[str] = []


def results_dir() -> Path:
    return Path(os.environ.get("CHAOS_RESULTS") or ROOT / "results" / "chaos")


def side_effects(state_db: Path) -> Counter[str]:
    """Task id -> committed side effects, from the state store."""
    if not state_db.exists():
        return Counter()
    with closing(sqlite3.connect(state_db)) as db:
        try:
            rows = db.execute(f"SELECT task_id FROM {EFFECTS_TABLE}").fetchall()
        except sqlite3.OperationalError:  # no table yet: nothing committed
            return Counter()
    return Counter(row[0] for row in rows)


def dead_letter_classes(messages: Iterable[Any]) -> dict[str, str]:
    """Task id -> ``x-error-class`` of each dead letter (``broker`` when only RabbitMQ's x-death says why)."""
    found = {}
    for message in messages:
        headers = dict(message.properties.get("application_headers") or {})
        task_id = headers.get("x-task-id") or headers.get("id")
        if task_id:
            found[str(task_id)] = str(headers.get("x-error-class") or "broker")
    return found


@dataclass
class ChaosLedger:
    """The ledger of one scenario."""

    scenario: str
    fault: str
    published: int = 0
    confirmed: int = 0
    refused: int = 0
    refused_but_arrived: int = 0
    processed: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    lost_ids: list[str] = field(default_factory=list)
    redelivered: int = 0
    duplicate_effects: int = 0
    seconds: float = 0.0
    #: Scenario-specific measurements (seconds to recover, faults injected...).
    measured: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        scenario: str,
        fault: str,
        confirmed: Iterable[str],
        refused: Iterable[str],
        state_db: Path,
        ledger_file: Path,
        dead: dict[str, str],
        started: float,
        measured: dict[str, float] | None = None,
    ) -> ChaosLedger:
        confirmed_ids, refused_ids = set(confirmed), set(refused)
        effects = side_effects(state_db)
        attempts = Counter(entry.task_id for entry in events(ledger_file, "attempt"))
        arrived = set(effects) | set(dead) | set(attempts)
        lost = sorted(confirmed_ids - set(effects) - set(dead))
        return cls(
            scenario=scenario,
            fault=fault,
            published=len(confirmed_ids) + len(refused_ids),
            confirmed=len(confirmed_ids),
            refused=len(refused_ids),
            refused_but_arrived=len(refused_ids & arrived),
            processed=len(confirmed_ids & set(effects)),
            dead_lettered=dict(Counter(dead[i] for i in confirmed_ids if i in dead and i not in effects)),
            lost=len(lost),
            lost_ids=lost[:20],
            redelivered=sum(1 for count in attempts.values() if count > 1),
            duplicate_effects=sum(1 for count in effects.values() if count > 1),
            seconds=round(time.monotonic() - started, 1),
            measured={key: round(value, 2) for key, value in (measured or {}).items()},
        )

    def summary(self) -> str:
        dead = sum(self.dead_lettered.values())
        classes = ", ".join(f"{name} {count}" for name, count in sorted(self.dead_lettered.items()))
        extra = "".join(f", {key} {value:g}" for key, value in self.measured.items())
        return (
            f"chaos {self.scenario}: confirmed {self.confirmed}, processed {self.processed}, "
            f"dead-lettered {dead}{f' ({classes})' if classes else ''}, lost {self.lost}, "
            f"redelivered {self.redelivered}, duplicate effects {self.duplicate_effects}, "
            f"refused {self.refused}{extra} ({self.seconds:g} s)"
        )

    def write(self) -> Path:
        """Write the JSON ledger and remember the summary line; returns the file."""
        folder = results_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.scenario}.json"
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        SUMMARIES.append(self.summary())
        return path

    def check(self) -> None:
        """The promise: nothing confirmed is lost, no side effect runs twice."""
        assert self.lost == 0, f"{self.lost} confirmed tasks lost: {self.lost_ids}\n{self.summary()}"
        assert self.duplicate_effects == 0, f"side effects committed twice\n{self.summary()}"
        assert self.confirmed > 0, f"nothing was confirmed: the scenario proved nothing\n{self.summary()}"
