"""PNG charts of the results (matplotlib, Agg backend): per-side rounds of each case's main metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend must be chosen first


def metric_chart(case: dict[str, Any], metric_name: str, folder: Path) -> str | None:
    """One bar per side (its median) with every round as a dot; the file name, or None."""
    metric = case["metrics"][metric_name]
    sides = [s["name"] for s in case["sides"] if metric["medians"].get(s["name"]) is not None]
    if not sides:
        return None
    figure, axes = plt.subplots(figsize=(max(5.0, 1.2 * len(sides) + 2), 3.6), dpi=100)
    medians = [metric["medians"][s] for s in sides]
    axes.bar(range(len(sides)), medians, color="#7aa6c2")
    for index, side in enumerate(sides):
        rounds = [v for v in metric["values"][side] if v is not None]
        axes.plot([index] * len(rounds), rounds, "o", color="#1f3b4d", markersize=4)
    axes.set_xticks(range(len(sides)), sides, rotation=20, ha="right", fontsize=8)
    better = "higher is better" if metric["higher_is_better"] else "lower is better"
    axes.set_ylabel(f"{metric_name} [{metric['unit']}]")
    axes.set_title(f"{case['name']}: {metric_name} ({better}; dots are rounds)", fontsize=10)
    figure.tight_layout()
    name = f"{case['name']}-{metric_name}.png"
    figure.savefig(folder / name)
    plt.close(figure)
    return name


#: The metrics drawn for each case.
CHARTED = {
    "drain": ("throughput", "cpu_per_1000"),
    "enqueue": ("throughput",),
    "latency": ("p50", "p99"),
    "memory": ("rss_mb",),
    "retry_storm": ("throughput", "rss_after_mb"),
    "peer": ("throughput", "p99"),
    "replay_rate": ("throughput",),
    "fan_out": ("throughput",),
}


def draw_all(results: dict[str, Any], folder: Path) -> list[str]:
    """Charts of every measured case; the file names (relative to ``folder``)."""
    names = []
    for case in results["cases"]:
        for metric_name in CHARTED.get(case["name"], ()):
            if metric_name in case.get("metrics", {}):
                name = metric_chart(case, metric_name, folder)
                if name:
                    names.append(name)
    return names
