"""Where each queue's pool stands, as ``scale status`` and Flower's Scaling page show it.

One row per work and subscriber queue: the due backlog now (management API),
and the scaling engine's last decision from the state store
(:mod:`workers.ops.scale_state`): the pool's workers, the desired size, the
reason and its age. Without a live engine the desired size is the policy's
advice, from the queue's consumers and this one sample (the metrics server's
advice, which keeps a history between scrapes, may differ).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from workers.ops.metrics import management_counts
from workers.ops.scale_state import read_decisions
from workers.scaling.limits import limits_for
from workers.scaling.policy import History, decide
from workers.scaling.signal import QueueSignal, SignalUnavailable, read_signals

if TYPE_CHECKING:
    from config.settings import Settings
    from config.topology import Topology

#: Where a row's desired size comes from.
ENGINE, ADVICE = "engine", "advice"


@dataclass(frozen=True)
class ScaleRow:
    """One queue's pool at a glance."""

    queue: str
    #: Ready + unacked now; None when the management API did not answer.
    due_backlog: int | None
    #: Consumers now (one per worker); None when unknown.
    consumers: int | None
    #: The engine's pool size at its last decision; None without one.
    workers: int | None
    #: The engine's decision (``source`` engine) or the policy's advice (``source`` advice).
    desired: int | None
    source: str
    #: Why ``desired``: the engine's reason, or the advice's.
    reason: str | None
    #: The engine's last decision's reason (live or not); None when no engine ever decided.
    last_decision: str | None
    #: Seconds since the engine's last decision; None without one.
    decided_ago: float | None
    #: Whether an engine decides this queue now (its decision is live).
    engine_running: bool
    pool: str | None = None
    actions_up: int = 0
    actions_down: int = 0
    restarts: int = 0

    def record(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class ScaleView:
    """Every queue's row, and why the backlog is missing if it is."""

    rows: list[ScaleRow]
    #: The management API's error, when it did not answer.
    signal_problem: str | None = None

    @property
    def engine_running(self) -> bool:
        return any(row.engine_running for row in self.rows)


def scale_view(settings: Settings, topology: Topology, now: float | None = None) -> ScaleView:
    """Read the backlog now and the engine's last decisions (blocking: HTTP and the state store).

    Raises:
        Exception: whatever the state store raises when it can't be read (the caller says so).
    """
    now = time.time() if now is None else now
    records = read_decisions(settings.state_url)
    problem = None
    try:
        signals: dict[str, QueueSignal] = read_signals(management_counts(settings, topology), topology.names)
    except SignalUnavailable as exc:
        signals, problem = {}, str(exc)
    rows = []
    for queue in topology.names:
        signal = signals.get(queue)
        record = records.get(queue)
        live = record is not None and record.live(now, settings.scale_interval) and not record.report.dry_run
        if record is not None and live:
            desired, source, reason = record.report.desired, ENGINE, record.report.reason
        elif signal is not None:
            advice = decide(signal, signal.consumers, limits_for(settings, queue), History(), now)
            desired, source, reason = advice.desired, ADVICE, advice.reason
        else:
            desired, source, reason = None, ADVICE, None
        last = record.report if record is not None else None
        rows.append(
            ScaleRow(
                queue=queue,
                due_backlog=signal.due_backlog if signal else None,
                consumers=signal.consumers if signal else None,
                workers=last.workers if last else None,
                desired=desired,
                source=source,
                reason=reason,
                last_decision=last.reason if last else None,
                decided_ago=round(now - last.at, 1) if last else None,
                engine_running=live,
                pool=record.pool if record else None,
                actions_up=last.actions_up if last else 0,
                actions_down=last.actions_down if last else 0,
                restarts=record.restarts if record else 0,
            )
        )
    return ScaleView(rows, problem)
