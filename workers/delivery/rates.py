"""Rate limits whose waiting messages sit in the broker: a schedule of slots per task (pure, no I/O).

Stock Celery keeps a token bucket per task in the worker's main process and
holds a message over the limit there, unacknowledged, in memory: it takes a
prefetch slot, so the messages behind it on the same queue (other tasks too)
wait, and a worker restart returns it to the queue's head. Here the consumer
(:class:`workers.delivery.consumer.PlatformConsumer`) asks
:meth:`RateSchedules.admit` on receipt, before Celery's strategy sees the
message, and Celery's own bucket is never used:

- a message that may run now runs;
- one that may not is given the task's next free slot, sent to the broker's
  delay levels until then with ``x-rate-limit-slot: <worker> <unix time>``
  (:data:`~workers.delivery.headers.RATE_SLOT`), and acknowledged: other work flows past it;
- when it comes back to the worker that gave it the slot, at that slot, it
  runs without taking another one.

The schedule is GCRA (a "theoretical arrival time" per task): with interval
``T = 1 / rate``, a new message's slot is ``max(next_free, now)`` and
``next_free`` moves to ``slot + T``. So under sustained overload the k-th
waiting message is due k*T ahead, each is postponed once (never a republish
spin), and no two runs of a task on one worker start closer than ``T`` (a
burst of one, like Celery's bucket of capacity 1). A message that comes back
late (its queue was busy) does not move the later slots.

Rate limits are per worker instance, as in Celery: each worker has its own
schedules, so N workers consuming a queue run up to N times the rate. A
message that comes back to a different worker than the one that gave it its
slot is a new arrival there (it may wait once more, for that worker's slot),
and so is a slot older than :data:`STALE_AFTER` (a copy replayed from a DLQ).
A restarted worker forgets its schedule; messages already waiting keep their
slots and run when they return, and the schedule resumes after the latest of
them that came back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: Seconds after which a slot is no longer honoured (a copy replayed from a DLQ, say).
STALE_AFTER = 60.0
#: A message back this much before its slot runs anyway (the delay levels' resolution).
EARLY_TOLERANCE = 0.01  # = workers.delivery.delays.RESOLUTION_SECONDS (a unit test checks)


@dataclass(frozen=True)
class Slot:
    """A slot given to one message: which worker gave it, and when it starts (unix time)."""

    worker: str
    at: float

    def header(self) -> str:
        """The value of :data:`~workers.delivery.headers.RATE_SLOT`."""
        return f"{self.worker} {self.at:.6f}"

    @classmethod
    def parse(cls, value: object) -> Slot | None:
        """The slot a :data:`~workers.delivery.headers.RATE_SLOT` header names, or None if it names none."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            return None
        worker, _, at = value.rpartition(" ")
        try:
            moment = float(at)
        except ValueError:
            return None
        return cls(worker, moment) if worker and math.isfinite(moment) else None


@dataclass
class Schedule:
    """One task's slots on one worker."""

    #: Seconds between two runs (1 / rate).
    interval: float
    #: When the next free slot starts (unix time; -inf: now).
    next_free: float = -math.inf

    def reserve(self, now: float) -> float:
        """Take the next free slot at or after ``now`` and return when it starts."""
        slot = max(self.next_free, now)
        self.next_free = slot + self.interval
        return slot

    def used(self, slot: float) -> None:
        """A message given ``slot`` ran: no later reservation may start before ``slot + interval``."""
        self.next_free = max(self.next_free, slot + self.interval)


class RateSchedules:
    """The rate-limit schedules of one worker instance, one per limited task."""

    def __init__(self) -> None:
        self._schedules: dict[str, Schedule] = {}

    def set_rates(self, rates: Mapping[str, float]) -> None:
        """Limit each task to its rate in tasks per second (0: unlimited).

        A task whose rate is unchanged keeps its schedule; a changed one starts
        afresh (like Celery's ``reset_rate_limits``, which makes new buckets):
        messages already given slots keep them.
        """
        schedules: dict[str, Schedule] = {}
        for name, per_second in rates.items():
            if not per_second or per_second <= 0 or not math.isfinite(per_second):
                continue
            interval = 1.0 / per_second
            current = self._schedules.get(name)
            schedules[name] = current if current and current.interval == interval else Schedule(interval)
        self._schedules = schedules

    def interval(self, task: str) -> float | None:
        """Seconds between runs of ``task`` (None: it is not limited)."""
        schedule = self._schedules.get(task)
        return schedule.interval if schedule else None

    def admit(self, task: str, now: float, worker: str, slot: Slot | None = None) -> Slot | None:
        """Whether a message of ``task`` arriving at ``now`` runs now (None) or waits for the slot returned.

        Args:
            task: the task's name.
            now: the time of arrival (unix time).
            worker: this worker's node name (written into the slots it gives).
            slot: the slot the message carries (:data:`~workers.delivery.headers.RATE_SLOT`), if any.
        """
        schedule = self._schedules.get(task)
        if schedule is None:
            return None
        if slot is not None and slot.worker == worker and now - slot.at <= STALE_AFTER:
            if now >= slot.at - EARLY_TOLERANCE:
                schedule.used(slot.at)
                return None
            return slot  # back too early: wait again for the same slot, take no new one
        at = schedule.reserve(now)
        return None if at <= now else Slot(worker, at)
