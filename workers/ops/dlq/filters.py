"""Which dead letters a replay takes: :class:`Filter`, and the durations its age criteria are given in (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from workers.ops.dlq.letters import DeadLetterMessage


@dataclass(frozen=True)
class Filter:
    """Which dead letters a replay takes; empty criteria match everything.

    Criteria of different kinds must all hold; several values of one kind are
    alternatives (``ids=("a", "b")`` takes either).
    """

    ids: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    error_classes: tuple[str, ...] = ()
    error_types: tuple[str, ...] = ()
    #: Only letters that entered the DLQ at least this long ago.
    older_than: timedelta | None = None
    #: Only letters that entered the DLQ at most this long ago.
    newer_than: timedelta | None = None

    def matches(self, letter: DeadLetterMessage, now: datetime) -> bool:
        if self.ids and letter.task_id not in self.ids:
            return False
        if self.groups and letter.group not in self.groups:
            return False
        if self.tasks and letter.task_name not in self.tasks:
            return False
        if self.error_classes and letter.error_class not in self.error_classes:
            return False
        if self.error_types and letter.error_type not in self.error_types:
            return False
        if self.older_than is not None or self.newer_than is not None:
            moment = letter.dead_lettered_at
            if moment is None:
                return False
            age = now - moment
            if self.older_than is not None and age < self.older_than:
                return False
            if self.newer_than is not None and age > self.newer_than:
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The criteria that are set, JSON-ready (for the audit log)."""
        described: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if isinstance(value, timedelta):
                described[name] = value.total_seconds()
            elif value:
                described[name] = list(value)
        return described


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d`` (or plain seconds) as a timedelta.

    Raises:
        ValueError: not a non-negative number with an optional unit s/m/h/d.
    """
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _DURATION_UNITS else "s"
    number = raw[:-1] if raw[-1:] in _DURATION_UNITS else raw
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return timedelta(seconds=value * _DURATION_UNITS[unit])
