"""The results: the summary table, ``results.json`` and ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.bench.runner import MISS

#: Columns of the summary table.
HEADER = ("case", "ratio (median of paired rounds)", "median", "spread", "target", "verdict")


def number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def summary_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per ratio of every case; one row for a case without ratios."""
    rows = []
    for case in results["cases"]:
        if not case["ratios"]:
            rows.append((case["name"], case["title"], "-", "-", "-", case["verdict"]))
            continue
        for ratio in case["ratios"]:
            spread = ratio["spread"]
            target = "-" if ratio["target"] is None else f"{ratio['op']} {ratio['target']:g}x"
            if ratio["kind"] == "aim":
                target += " (aim)"
            rows.append(
                (
                    case["name"],
                    ratio["name"],
                    number(ratio["median"]) + "x" if ratio["median"] is not None else "-",
                    "-" if spread["min"] is None else f"{number(spread['min'])}-{number(spread['max'])}",
                    target,
                    ratio["verdict"],
                )
            )
    return rows


def text_table(rows: list[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def markdown_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])


def side_rows(case: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per side: median (and min-max) of every metric."""
    rows = []
    for side in case["sides"]:
        cells = [side["name"]]
        for metric in case["metrics"].values():
            median = metric["medians"].get(side["name"])
            spread = metric["spread"].get(side["name"]) or {}
            if median is None:
                cells.append("-")
            else:
                cells.append(f"{number(median)} ({number(spread.get('min'))}-{number(spread.get('max'))})")
        rows.append(tuple(cells))
    return rows


def write_json(results: dict[str, Any], folder: Path) -> Path:
    path = folder / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def write_markdown(results: dict[str, Any], charts: list[str], folder: Path) -> Path:
    """``report.md``: machine, summary with verdicts, misses said plainly, per-case detail."""
    machine = results["machine"]
    out = [
        f"# Benchmark report ({results['mode']})",
        "",
        f"Run {results['started_at']} for {results['duration_s']:.0f} s, {results['rounds']} interleaved "
        f"rounds per case. Machine: {machine['nproc']} cores, {machine['memory_gb']} GiB, RabbitMQ "
        f"{machine['rabbitmq']} (Erlang {machine['erlang']}), Python {machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
        + f". Load average at start {', '.join(f'{x:.2f}' for x in machine['load_average'])}.",
        "",
        "Every ratio is the median of per-round ratios (round i of one side over round i of the "
        "other); spread is min-max of those ratios. Workers are prefork with concurrency 2, each "
        "side in a fresh vhost with fresh processes.",
        "",
        *(
            [
                "**Quick run**: tiny sizes to check the suite works; its verdicts say little "
                "(start-up and warm-up dominate). Judge the platform on a full run.",
                "",
            ]
            if results["mode"] == "quick"
            else []
        ),
        "## Summary",
        "",
        markdown_table(summary_rows(results), HEADER),
        "",
    ]
    misses = [
        (case, ratio) for case in results["cases"] for ratio in case["ratios"] if ratio["verdict"] == MISS
    ]
    out += ["## Targets missed", ""]
    if not misses:
        out += ["None.", ""]
    for case, ratio in misses:
        out.append(
            f"- **{case['name']}**: {ratio['name']} is {number(ratio['median'])}x, target "
            f"{ratio['op']} {ratio['target']:g}x ({ratio['kind']})."
        )
    for case in results["cases"]:
        if case.get("profile"):
            out.append(
                f"- profile of `{case['name']}` (platform side): "
                + ", ".join(f"[{p}]({p})" for p in case["profile"])
            )
        if case.get("profile_error"):
            out.append(f"- profiling `{case['name']}` failed: {case['profile_error']}")
    out.append("")
    for case in results["cases"]:
        out += [f"## {case['name']}: {case['title']}", "", f"Verdict: **{case['verdict']}**", ""]
        if case["status"] != "built":
            out += [*case["notes"], ""]
            continue
        header = ("side", *(f"{name} [{m['unit']}]" for name, m in case["metrics"].items()))
        out += [markdown_table(side_rows(case), header), ""]
        out += [f"- {side['name']}: {side['description']}" for side in case["sides"]]
        out += [f"- note: {note}" for note in case["notes"]]
        out += [f"- error: {e['side']} round {e['round']}: {e['error']}" for e in case["errors"]]
        out += [f"![{c}]({c})" for c in charts if Path(c).stem.startswith(case["name"])]
        out.append("")
    path = folder / "report.md"
    path.write_text("\n".join(out))
    return path
