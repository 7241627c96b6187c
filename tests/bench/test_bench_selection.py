"""Which cases a run measures, and the autoscale case's reading of the engine's log (no broker needed)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.bench.__main__ import parse
from tests.bench.cases import CASES, NOT_BUILT, quick_cases
from tests.bench.cases.autoscale import actions

#: Cases kept out of ``--quick`` (``make test``): they take minutes even at their quick size.
SLOW_CASES = {"autoscale", "saga", "cluster"}


def test_a_quick_run_leaves_the_slow_cases_out_unless_they_are_named() -> None:
    """Given the autoscale, saga and cluster cases, which take minutes even at quick size,
    when ``--quick`` runs without ``--cases``, then they are not selected, every other case is;
    and when ``--cases autoscale,saga`` names them, quick or not, then exactly they run."""
    assert set(parse(["--quick"]).cases) == (set(CASES) - SLOW_CASES) | set(NOT_BUILT)
    assert set(quick_cases()) == set(CASES) - SLOW_CASES
    assert parse(["--quick", "--cases", "autoscale,saga"]).cases == ["autoscale", "saga"]
    assert parse(["--cases", "saga"]).cases == ["saga"]
    assert set(parse([]).cases) == set(CASES) | set(NOT_BUILT)


def test_the_engine_log_gives_each_scale_action_with_its_time(tmp_path: Path) -> None:
    """Given an engine log with its start, a first pass and two actions,
    when the autoscale case reads it, then it gets each action's time, from and to, and nothing else."""
    log = tmp_path / "engine.log"
    log.write_text(
        "2026-12-07 05:49:32,306 INFO scale: pool local on amqp://guest:**@127.0.0.1:5672/x, queues bench\n"
        "2026-12-07 05:49:32,315 INFO scale bench: started bench-1@vm (pid 3702)\n"
        "2026-12-07 05:49:32,315 INFO scale bench: 0 -> 1: below min 1: 0 -> 1\n"
        "2026-12-07 05:49:40,349 INFO scale bench: 1 -> 3: backlog 3,166 > 1,000: +2 (1 -> 3)\n"
        "2026-12-07 05:49:46,225 INFO scale: SIGTERM: stopping\n"
    )
    first = datetime(2026, 12, 7, 5, 49, 32, 315_000).timestamp()
    second = datetime(2026, 12, 7, 5, 49, 40, 349_000).timestamp()
    assert actions(log) == [(first, 0, 1), (second, 1, 3)]
