"""Run a case's sides in interleaved rounds and judge its ratios.

A case is a list of :class:`Side` (each measures one configuration once, in a
fresh vhost with fresh worker processes) and a list of :class:`Ratio` (targets
on the median of paired ratios). Rounds interleave the sides, A, B, A, B, ...,
so slow drift of a shared machine hits every side alike; ratios pair round i
of one side with round i of the other.
"""

from __future__ import annotations

import shutil
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import stats
from tests.bench.progress import Progress
from tests.bench.sizes import Sizes

#: Verdicts a ratio or a case can have.
PASS, MISS, INFO, ERROR, NOT_BUILT = "PASS", "MISS", "INFO", "ERROR", "not yet built"


@dataclass
class SideRun:
    """What one side needs to run one round."""

    sizes: Sizes
    folder: Path
    round: int
    results: Path
    #: Run under the profiler (pyinstrument; with ``trace_memory`` tracemalloc too).
    profile: bool = False
    trace_memory: bool = False

    def profile_environment(self) -> dict[str, str]:
        """Variables that switch profiling on in a platform worker (see ``apps/profiling.py``)."""
        if not self.profile:
            return {}
        env = {"BENCH_PROFILE_DIR": str(self.folder)}
        if self.trace_memory:
            env["BENCH_TRACEMALLOC"] = "1"
        return env


@dataclass(frozen=True)
class Side:
    """One configuration of a case, measured once per round."""

    name: str
    description: str
    measure: Callable[[SideRun], dict[str, float]]


@dataclass(frozen=True)
class Metric:
    """A number each side reports per round."""

    name: str
    unit: str
    higher_is_better: bool


@dataclass(frozen=True)
class Ratio:
    """``numerator`` / ``denominator`` (sides, optionally other metrics), paired by round."""

    metric: str
    numerator: str
    denominator: str
    target: float | None = None
    #: ``>=`` or ``<=``: how the median must compare with ``target``.
    op: str = ">="
    #: ``must`` targets decide the case's verdict; ``aim`` ones are reported only.
    kind: str = "must"
    #: Metric of the denominator when it differs (e.g. memory after / before).
    denominator_metric: str | None = None

    @property
    def name(self) -> str:
        top = f"{self.numerator}.{self.metric}" if self.denominator_metric else self.numerator
        bottom = (
            f"{self.denominator}.{self.denominator_metric}" if self.denominator_metric else self.denominator
        )
        return f"{top} / {bottom}" + ("" if self.denominator_metric else f" ({self.metric})")


@dataclass
class Case:
    """A benchmark case: its sides, what they report, and the targets."""

    name: str
    title: str
    sides: list[Side]
    metrics: list[Metric]
    ratios: list[Ratio]
    notes: list[str] = field(default_factory=list)
    #: Side re-run under the profiler when a must target is missed.
    profile_side: str | None = None
    #: Trace allocations in that run too (memory targets).
    profile_memory: bool = False
    #: Part of ``--quick`` runs (``make test``); False: only when named in ``--cases``.
    quick: bool = True
    #: Entered once around all rounds (and the profiling run): what the sides share, e.g. a
    #: cluster the case starts and removes. If entering fails, every round counts as failed.
    around: Callable[[], AbstractContextManager[object]] | None = None


def profile_case(case: Case, sizes: Sizes, results: Path) -> list[str]:
    """Re-run ``case.profile_side`` once under the profiler; the profile files, relative to ``results``.

    Raises:
        Exception: whatever the side raised.
    """
    side = next(s for s in case.sides if s.name == case.profile_side)
    folder = results / "profiles" / case.name
    folder.mkdir(parents=True, exist_ok=True)
    with case.around() if case.around else nullcontext():
        side.measure(SideRun(sizes, folder, 0, results, profile=True, trace_memory=case.profile_memory))
    kept = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("profile-", "memory-")):
            kept.append(str(path.relative_to(results)))
        elif path.is_file() and not path.name.endswith(".log"):
            path.unlink()
    return kept


def judge(ratio: Ratio, median: float | None) -> str:
    if ratio.target is None:
        return INFO
    if median is None:
        return ERROR
    ok = median >= ratio.target if ratio.op == ">=" else median <= ratio.target
    return PASS if ok else MISS


def run_case(case: Case, sizes: Sizes, rounds: int, results: Path, progress: Progress) -> dict[str, Any]:
    """Measure every side of ``case`` for ``rounds`` interleaved rounds; the case's JSON."""
    values: dict[str, dict[str, list[float | None]]] = {
        m.name: {s.name: [] for s in case.sides} for m in case.metrics
    }
    errors: list[dict[str, Any]] = []
    try:
        with case.around() if case.around else nullcontext():
            measure_rounds(case, sizes, rounds, results, values, errors, progress)
    except Exception as exc:  # noqa: BLE001 - the shared setup failed: the case has no results
        errors.append({"side": "*", "round": 0, "error": repr(exc)})
        progress.note(f"  {case.name}: could not run: {exc!r}")
        for metric in case.metrics:
            for side in case.sides:
                runs = values[metric.name][side.name]
                runs += [None] * (rounds - len(runs))
    return summarize(case, rounds, values, errors)


def measure_rounds(
    case: Case,
    sizes: Sizes,
    rounds: int,
    results: Path,
    values: dict[str, dict[str, list[float | None]]],
    errors: list[dict[str, Any]],
    progress: Progress,
) -> None:
    """Run ``rounds`` interleaved rounds of ``case``'s sides, adding to ``values`` and ``errors``."""
    work = results / "work" / case.name
    for index in range(rounds):
        for side in case.sides:
            progress.show(f"{case.name}: {side.name} (round {index + 1}/{rounds})")
            folder = work / f"{side.name}-r{index + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            try:
                measured = side.measure(SideRun(sizes, folder, index, results))
            except Exception as exc:  # noqa: BLE001 - one failed round must not end the suite
                measured = {}
                errors.append({"side": side.name, "round": index + 1, "error": repr(exc)})
                (folder / "error.txt").write_text(traceback.format_exc())
                progress.note(f"  {case.name}/{side.name} round {index + 1} failed: {exc!r}")
            else:
                shutil.rmtree(folder, ignore_errors=True)
            for metric in case.metrics:
                values[metric.name][side.name].append(measured.get(metric.name))
            progress.step(f"{case.name}: {side.name} (round {index + 1}/{rounds})")


def summarize(
    case: Case,
    rounds: int,
    values: dict[str, dict[str, list[float | None]]],
    errors: list[dict[str, Any]],
) -> dict[str, Any]:
    """The case's JSON: per metric medians and spread, per ratio the paired median and verdict."""
    metrics = {
        m.name: {
            "unit": m.unit,
            "higher_is_better": m.higher_is_better,
            "values": values[m.name],
            "medians": {side: stats.median(v) for side, v in values[m.name].items()},
            "spread": {side: stats.spread(v) for side, v in values[m.name].items()},
        }
        for m in case.metrics
    }
    ratios = []
    for ratio in case.ratios:
        top = values[ratio.metric][ratio.numerator]
        bottom = values[ratio.denominator_metric or ratio.metric][ratio.denominator]
        paired = stats.paired_ratios(top, bottom)
        median = stats.median(paired)
        ratios.append(
            {
                "name": ratio.name,
                "metric": ratio.metric,
                "numerator": ratio.numerator,
                "denominator": ratio.denominator,
                "denominator_metric": ratio.denominator_metric or ratio.metric,
                "paired": paired,
                "median": median,
                "spread": stats.spread(paired),
                "target": ratio.target,
                "op": ratio.op,
                "kind": ratio.kind if ratio.target is not None else "info",
                "verdict": judge(ratio, median),
            }
        )
    return {
        "name": case.name,
        "title": case.title,
        "status": "built",
        "sides": [{"name": s.name, "description": s.description} for s in case.sides],
        "rounds": rounds,
        "metrics": metrics,
        "ratios": ratios,
        "verdict": case_verdict(ratios, errors),
        "errors": errors,
        "notes": list(case.notes),
    }


def case_verdict(ratios: list[dict[str, Any]], errors: list[dict[str, Any]]) -> str:
    """MISS if a must target is missed, ERROR if one could not be judged, else PASS (INFO: no target)."""
    musts = [r["verdict"] for r in ratios if r["kind"] == "must"]
    if MISS in musts:
        return MISS
    if ERROR in musts:
        return ERROR
    if musts:
        return PASS
    return ERROR if errors else INFO


def not_built(name: str, title: str, issue: str) -> dict[str, Any]:
    """The JSON of a case the suite does not measure yet."""
    return {
        "name": name,
        "title": title,
        "status": NOT_BUILT,
        "sides": [],
        "rounds": 0,
        "metrics": {},
        "ratios": [],
        "verdict": NOT_BUILT,
        "errors": [],
        "notes": [f"not yet built: waits for {issue}"],
    }
