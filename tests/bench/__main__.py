"""``python -m tests.bench [--quick] [--out DIR] [--cases a,b] [--rounds N]``.

Runs the selected cases against the local RabbitMQ, prints the summary table
and writes ``results.json``, ``report.md`` and PNG charts into one folder
(default ``results/bench-<timestamp>``). Exits 0 when the suite ran, whatever
the verdicts (they are results, not failures); 2 on bad arguments or when the
broker can't be reached.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import charts, machine, report
from tests.bench.cases import CASES, NOT_BUILT, quick_cases
from tests.bench.processes import ROOT
from tests.bench.progress import Progress
from tests.bench.runner import MISS, not_built, profile_case, run_case
from tests.bench.sizes import FULL, QUICK, Sizes
from tests.support.broker import broker_problem

#: Fewest interleaved rounds a case may run.
MIN_ROUNDS = 3


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the quick cases at a tiny size (under 2 minutes); cases outside the quick set run "
        "only when named in --cases",
    )
    parser.add_argument("--out", type=Path, help="results folder (default results/bench-<timestamp>)")
    names = [*CASES, *NOT_BUILT]
    parser.add_argument("--cases", help=f"comma-separated subset of: {','.join(names)}")
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds per case (at least {MIN_ROUNDS})")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile a platform side when a case misses a target (default: on, off with --quick)",
    )
    options = parser.parse_args(argv)
    if options.cases:
        options.cases = [c.strip() for c in options.cases.split(",") if c.strip()]
        unknown = [c for c in options.cases if c not in names]
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    elif options.quick:
        options.cases = [*quick_cases(), *NOT_BUILT]
    else:
        options.cases = names
    if options.rounds is not None and options.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}")
    return options


def run_suite(
    selected: list[str], sizes: Sizes, rounds: int, folder: Path, mode: str, profile: bool
) -> dict[str, Any]:
    """Run the selected cases; the whole results document."""
    started = time.time()
    built = {name: CASES[name](sizes) for name in selected if name in CASES}
    progress = Progress(sum(len(case.sides) for case in built.values()) * rounds)
    results: dict[str, Any] = {
        "suite": "rabbit-platform benchmarks",
        "mode": mode,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "rounds": rounds,
        "sizes": sizes.__dict__ | {"rounds": rounds},
        "cases": [],
    }
    for name in selected:
        if name in NOT_BUILT:
            title, issue = NOT_BUILT[name]
            results["cases"].append(not_built(name, title, issue))
            continue
        case = built[name]
        outcome = run_case(case, sizes, rounds, folder, progress)
        if profile and outcome["verdict"] == MISS and case.profile_side:
            progress.note(f"  {name}: target missed, profiling {case.profile_side} ...")
            try:
                outcome["profile"] = profile_case(case, sizes, folder)
            except Exception as exc:  # noqa: BLE001 - a failed profile must not lose the results
                outcome["profile_error"] = repr(exc)
        results["cases"].append(outcome)
    progress.close()
    results["duration_s"] = time.time() - started
    results["machine"]["load_average_end"] = list(os.getloadavg())
    return results


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so every side's workers are stopped on the way out."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    stop_on_sigterm()
    problem = broker_problem()
    if problem:
        print(f"cannot run the benchmarks: {problem}", file=sys.stderr)
        return 2
    sizes = QUICK if options.quick else FULL
    rounds = options.rounds or sizes.rounds
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = (options.out or ROOT / "results" / f"bench-{stamp}").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    mode = "quick" if options.quick else "full"
    profile = sizes.profile if options.profile is None else options.profile
    results = run_suite(options.cases, sizes, rounds, folder, mode, profile)
    pictures = charts.draw_all(results, folder)
    results["charts"] = pictures
    report.write_json(results, folder)
    report.write_markdown(results, pictures, folder)
    print(report.text_table(report.summary_rows(results)))
    print(f"\nresults: {folder} (results.json, report.md, {len(pictures)} charts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
