"""The quick benchmark suite runs end to end and writes well-formed results.

It never asserts speeds: this machine is shared and the quick sizes are tiny.
Under ``CI=true`` a missing broker fails the test instead of skipping it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.cases import NOT_BUILT, quick_cases
from tests.bench.processes import ROOT
from tests.conftest import require_broker
from tests.support.broker import in_ci

pytestmark = pytest.mark.broker

#: The built cases ``--quick`` measures (the others, e.g. autoscale and saga, only when named).
CASES = quick_cases()

#: Verdicts a ratio may have.
RATIO_VERDICTS = {"PASS", "MISS", "INFO", "ERROR"}
#: Verdicts a built case may have.
CASE_VERDICTS = {"PASS", "MISS", "INFO", "ERROR"}
#: Packages of the project's ``bench`` extra that the suite needs.
BENCH_EXTRA = ("matplotlib", "dramatiq", "pyinstrument", "psutil")
#: Seconds the quick suite may take here before the test gives up (it aims at under 120).
QUICK_TIMEOUT = 420


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run ``python -m tests.bench --quick`` once into a temporary folder."""
    require_broker()
    missing = [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        problem = f"the bench extra is not installed ({', '.join(missing)}): pip install -e '.[dev,bench]'"
        if in_ci():
            pytest.fail(f"CI=true and the benchmarks are required: {problem}")
        pytest.skip(problem)
    folder = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick", "--out", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=QUICK_TIMEOUT,
        check=False,
    )
    return folder, done


@pytest.mark.timeout(QUICK_TIMEOUT + 60)
def test_the_quick_suite_completes_and_prints_the_summary_table(quick_run) -> None:
    folder, done = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verdict" in done.stdout
    for name in [*CASES, *NOT_BUILT]:
        assert name in done.stdout


@pytest.mark.timeout(QUICK_TIMEOUT + 60)
def test_every_built_case_reports_sides_rounds_medians_spread_ratios_and_a_verdict(quick_run) -> None:
    folder, done = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((folder / "results.json").read_text())
    assert results["mode"] == "quick"
    assert results["machine"]["nproc"] >= 1
    cases = {case["name"]: case for case in results["cases"]}
    assert set(cases) == {*CASES, *NOT_BUILT}
    for name in CASES:
        case = cases[name]
        assert case["status"] == "built"
        assert case["rounds"] >= 1
        assert case["errors"] == [], f"{name}: {case['errors']}"
        sides = [side["name"] for side in case["sides"]]
        assert len(sides) >= 2
        assert case["verdict"] in CASE_VERDICTS
        for metric_name, metric in case["metrics"].items():
            assert set(metric["medians"]) == set(sides), metric_name
            assert set(metric["spread"]) == set(sides), metric_name
            for side in sides:
                assert len(metric["values"][side]) == case["rounds"]
                assert set(metric["spread"][side]) >= {"min", "max", "q1", "q3"}
        assert case["ratios"], name
        for ratio in case["ratios"]:
            assert ratio["numerator"] in sides and ratio["denominator"] in sides
            assert len(ratio["paired"]) == case["rounds"]
            assert "median" in ratio
            assert ratio["verdict"] in RATIO_VERDICTS
            if ratio["target"] is not None:
                assert isinstance(ratio["median"], float), ratio["name"]
                assert ratio["verdict"] in {"PASS", "MISS"}, ratio["name"]
    targets = [r for name in CASES for r in cases[name]["ratios"] if r["target"] is not None]
    assert {r["verdict"] for r in targets} <= {"PASS", "MISS"}
    for name in NOT_BUILT:
        assert cases[name]["status"] == cases[name]["verdict"] == "not yet built"


@pytest.mark.timeout(QUICK_TIMEOUT + 60)
def test_the_report_and_charts_are_written(quick_run) -> None:
    folder, done = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    report = (folder / "report.md").read_text()
    for name in [*CASES, *NOT_BUILT]:
        assert f"## {name}" in report
    pictures = sorted(folder.glob("*.png"))
    assert pictures
    for picture in pictures:
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
