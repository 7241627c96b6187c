"""The suite's arithmetic: paired ratios, spread, verdicts (no broker needed)."""

from __future__ import annotations

import pytest

from tests.bench import stats
from tests.bench.runner import ERROR, INFO, MISS, PASS, Case, Metric, Ratio, judge, summarize


@pytest.mark.parametrize(
    ("top", "bottom", "expected"),
    [
        ([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]),
        ([1.0, None, 3.0], [1.0, 1.0, 0.0], [1.0, None, None]),
    ],
)
def test_paired_ratios_divide_round_by_round(top, bottom, expected) -> None:
    assert stats.paired_ratios(top, bottom) == expected


def test_spread_gives_min_max_and_quartiles_of_what_was_measured() -> None:
    assert stats.spread([3.0, None, 1.0, 2.0]) == {"min": 1.0, "max": 3.0, "q1": 1.5, "q3": 2.5}
    assert stats.spread([None]) == {"min": None, "max": None, "q1": None, "q3": None}


@pytest.mark.parametrize(
    ("ratio", "median", "verdict"),
    [
        (Ratio("m", "a", "b", 0.9, ">="), 0.95, PASS),
        (Ratio("m", "a", "b", 0.9, ">="), 0.85, MISS),
        (Ratio("m", "a", "b", 1.2, "<="), 1.1, PASS),
        (Ratio("m", "a", "b", 1.2, "<="), 1.3, MISS),
        (Ratio("m", "a", "b"), 3.0, INFO),
        (Ratio("m", "a", "b", 1.0, ">="), None, ERROR),
    ],
)
def test_a_ratio_is_judged_on_its_median(ratio, median, verdict) -> None:
    assert judge(ratio, median) == verdict


def test_a_missed_must_target_misses_the_case_but_a_missed_aim_does_not() -> None:
    case = Case(
        "c",
        "t",
        sides=[],
        metrics=[Metric("m", "u", True)],
        ratios=[Ratio("m", "a", "b", 1.0, ">=", "must"), Ratio("m", "a", "b", 2.0, ">=", "aim")],
    )
    values = {"m": {"a": [3.0, 3.0, 3.0], "b": [2.0, 2.0, 2.0]}}
    summary = summarize(case, 3, values, [])
    assert [r["verdict"] for r in summary["ratios"]] == [PASS, MISS]
    assert summary["verdict"] == PASS
    assert summary["ratios"][0]["median"] == 1.5
