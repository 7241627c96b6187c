"""The benchmark cases, in the order the suite runs them."""

from __future__ import annotations

from collections.abc import Callable

from tests.bench.cases import delays, drain, enqueue, fan_out, latency, memory, peer, replay_rate, retry_storm
from tests.bench.runner import Case
from tests.bench.sizes import Sizes

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
}

#: Cases of later issues: listed in the table and the JSON, not measured.
NOT_BUILT: dict[str, tuple[str, str]] = {}
