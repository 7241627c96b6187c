"""The benchmark cases, in the order the suite runs them."""

from __future__ import annotations

from collections.abc import Callable

from tests.bench.cases import (
    autoscale,
    cluster,
    delays,
    drain,
    enqueue,
    fan_out,
    latency,
    memory,
    peer,
    replay_rate,
    retry_storm,
    saga,
)
from tests.bench.runner import Case
from tests.bench.sizes import QUICK, Sizes

#: Case name -> builder, in run order.
CASES: dict[str, Callable[[Sizes], Case]] = {
    "drain": drain.case,
    "enqueue": enqueue.case,
    "latency": latency.case,
    "memory": memory.case,
    "retry_storm": retry_storm.case,
    "peer": peer.case,
    "replay_rate": replay_rate.case,
    "fan_out": fan_out.case,
    "delays": delays.case,
    "autoscale": autoscale.case,
    "saga": saga.case,
    "cluster": cluster.case,
}

#: Cases of later issues: listed in the table and the JSON, not measured.
NOT_BUILT: dict[str, tuple[str, str]] = {}


def quick_cases() -> list[str]:
    """The built cases a ``--quick`` run measures when ``--cases`` names none (``Case.quick``)."""
    return [name for name, build in CASES.items() if build(QUICK).quick]
