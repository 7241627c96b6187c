"""Broker-side faults on the test cluster: resource alarms and a short consumer timeout.

Each is a context manager that sets the fault with ``rabbitmqctl`` (every call
with a ``--timeout``, :func:`workers.ops.cluster.nodes.ctl`), waits until the
cluster shows it, and restores RabbitMQ's defaults on the way out, so the
next scenario on the session's cluster starts clean. These change a broker's
state: they run only on the private test cluster, never on the machine's node.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.cluster import management
from tests.support.wait import wait_for
from workers.ops.cluster.layout import Layout, Node
from workers.ops.cluster.nodes import ClusterError, ctl

#: RabbitMQ 3.10's defaults (rabbit.app), restored after each fault.
DEFAULT_MEMORY_WATERMARK = "0.4"
DEFAULT_DISK_FREE_LIMIT = "50000000"
DEFAULT_CONSUMER_TIMEOUT_MS = 1_800_000
DEFAULT_CHANNEL_TICK_MS = 60_000
#: A free-disk limit no machine meets (bytes): the disk alarm goes off at once.
IMPOSSIBLE_DISK_FREE_LIMIT = str(10**18)
#: What each alarm kind sets and restores (``rabbitmqctl`` arguments), and its field in /api/nodes.
ALARMS = {
    "memory": (
        ("set_vm_memory_high_watermark", "0"),
        ("set_vm_memory_high_watermark", DEFAULT_MEMORY_WATERMARK),
        "mem_alarm",
    ),
    "disk": (
        ("set_disk_free_limit", IMPOSSIBLE_DISK_FREE_LIMIT),
        ("set_disk_free_limit", DEFAULT_DISK_FREE_LIMIT),
        "disk_free_alarm",
    ),
}


def run(layout: Layout, node: Node, *args: str, timeout: float = 15.0) -> str:
    """``rabbitmqctl <args>`` on ``node``; its output.

    Raises:
        ClusterError: it failed or hung.
    """
    result = ctl(layout, node, *args, timeout=timeout)
    if result.returncode != 0:
        raise ClusterError(
            f"rabbitmqctl {' '.join(args)} on node {node.number}: {result.stderr.strip()[:300]}"
        )
    return result.stdout


def alarmed_nodes(layout: Layout, kind: str) -> set[str]:
    """Names of the nodes whose ``kind`` alarm is on (management API)."""
    field = ALARMS[kind][2]
    return {node["name"] for node in management(layout, "GET", "nodes") if node.get(field)}


@contextmanager
def resource_alarm(layout: Layout, node: Node, kind: str, timeout: float = 30.0) -> Iterator[None]:
    """Raise a ``kind`` ("memory" or "disk") alarm on ``node`` while the block runs.

    A memory watermark of 0 and a free-disk limit of an exabyte set the alarm
    off at once; RabbitMQ then blocks every publishing connection of the
    cluster (alarms are cluster-wide) until it clears.
    """
    raise_args, clear_args, _field = ALARMS[kind]
    run(layout, node, *raise_args)
    try:
        wait_for(
            lambda: node.name in alarmed_nodes(layout, kind),
            timeout=timeout,
            interval=0.2,
            message=f"the {kind} alarm on node {node.number}",
        )
        yield
    finally:
        run(layout, node, *clear_args)
        wait_for(
            lambda: not alarmed_nodes(layout, kind),
            timeout=timeout,
            interval=0.2,
            message=f"the {kind} alarm to clear",
        )


def set_env(layout: Layout, key: str, value: int) -> None:
    """``application:set_env(rabbit, key, value)`` on every node."""
    for node in layout.nodes:
        run(layout, node, "eval", f"application:set_env(rabbit, {key}, {int(value)}).")


@contextmanager
def short_consumer_timeout(layout: Layout, timeout_ms: int, tick_ms: int) -> Iterator[None]:
    """Every node's ``consumer_timeout`` and channel tick lowered while the block runs.

    RabbitMQ 3.10 checks a channel's unacknowledged deliveries against
    ``consumer_timeout`` on the channel's tick, ``channel_tick_interval``
    (60 s by default: "about once a minute"); both are read when a channel
    opens, so only channels opened inside the block get them.
    """
    set_env(layout, "channel_tick_interval", tick_ms)
    set_env(layout, "consumer_timeout", timeout_ms)
    try:
        yield
    finally:
        set_env(layout, "consumer_timeout", DEFAULT_CONSUMER_TIMEOUT_MS)
        set_env(layout, "channel_tick_interval", DEFAULT_CHANNEL_TICK_MS)
