"""A case's shared setup (``Case.around``): entered once around its rounds; a failed one fails every round."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.bench.progress import Progress
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun, run_case
from tests.bench.sizes import QUICK


def counting_case(entered: list[str], fail_setup: bool = False) -> Case:
    @contextmanager
    def around() -> Iterator[None]:
        entered.append("up")
        if fail_setup:
            raise RuntimeError("the cluster did not start")
        yield
        entered.append("down")

    def measure(run: SideRun) -> dict[str, float]:
        entered.append(f"round {run.round + 1}")
        return {"seconds": 1.0 + run.round}

    return Case(
        name="shared",
        title="a case with shared setup",
        sides=[Side("a", "side a", measure)],
        metrics=[Metric("seconds", "s", higher_is_better=False)],
        ratios=[Ratio("seconds", "a", "a", 2.0, "<=", "must")],
        around=around,
    )


def test_the_shared_setup_is_entered_once_around_every_round(tmp_path: Path) -> None:
    """Given a case with an ``around`` setup, when it runs 3 rounds,
    then the setup is entered before the first and left after the last, once."""
    entered: list[str] = []
    outcome = run_case(counting_case(entered), QUICK, 3, tmp_path, Progress(3, io.StringIO()))
    assert entered == ["up", "round 1", "round 2", "round 3", "down"]
    assert outcome["metrics"]["seconds"]["values"]["a"] == [1.0, 2.0, 3.0]
    assert outcome["verdict"] == "PASS"


def test_a_shared_setup_that_fails_fails_every_round_of_its_case_only(tmp_path: Path) -> None:
    """Given a case whose setup raises (a cluster that can't start),
    when it runs, then no round runs, each is recorded as missing, the error is kept
    and the case's verdict is ERROR instead of the whole suite stopping."""
    entered: list[str] = []
    outcome = run_case(
        counting_case(entered, fail_setup=True), QUICK, 3, tmp_path, Progress(3, io.StringIO())
    )
    assert entered == ["up"]
    assert outcome["metrics"]["seconds"]["values"]["a"] == [None, None, None]
    assert outcome["errors"] == [
        {"side": "*", "round": 0, "error": "RuntimeError('the cluster did not start')"}
    ]
    assert outcome["verdict"] == "ERROR"
