"""Statistics of interleaved rounds: medians, spread, paired ratios, percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def present(values: Sequence[float | None]) -> list[float]:
    """The values that were measured (failed rounds are None)."""
    return [v for v in values if v is not None and not math.isnan(v)]


def median(values: Sequence[float | None]) -> float | None:
    found = present(values)
    return statistics.median(found) if found else None


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Min, max and the interquartile range of the measured values."""
    found = sorted(present(values))
    if not found:
        return {"min": None, "max": None, "q1": None, "q3": None}
    if len(found) == 1:
        q1 = q3 = found[0]
    else:
        q1, _, q3 = statistics.quantiles(found, n=4, method="inclusive")
    return {"min": found[0], "max": found[-1], "q1": q1, "q3": q3}


def paired_ratios(
    numerator: Sequence[float | None], denominator: Sequence[float | None]
) -> list[float | None]:
    """Round i of the numerator divided by round i of the denominator."""
    ratios: list[float | None] = []
    for top, bottom in zip(numerator, denominator, strict=False):
        if top is None or bottom is None or bottom == 0:
            ratios.append(None)
        else:
            ratios.append(top / bottom)
    return ratios


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]
