"""Chaos on the cluster: a node stopped gracefully and started again under load, with tasks delayed.

The node that leads ``orders`` (and, as the topology was declared through it,
the delay levels ``platform.delay.N``) is stopped with ``rabbitmqctl stop``
while tasks drain and countdown tasks wait in the delay levels, some falling
due while it is down, then started again with its data. Every confirmed task
must run once, none lost, and no delayed task before its due time (the delay
levels keep a message's due time across a leader change: each level's TTL
expires it on whichever member leads).
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import sized
from tests.support.chaos_run import Published, chaos_task, done_count, first_attempts
from tests.support.cluster_chaos import ledger_of, settle
from tests.support.wait import wait_for
from workers.ops.cluster import control

pytestmark = pytest.mark.broker


def publish_delayed(published: Published, work, count: int, first: float, span: float) -> dict[str, float]:
    """``count`` countdown tasks due from ``first`` to ``first + span`` seconds from now; id -> due (unix)."""
    due = {}
    for i in range(count):
        countdown = first + span * i / max(count - 1, 1)
        before = time.time()  # the platform's due time is at least this plus the countdown
        if published.one(work, countdown=round(countdown, 2)):
            due[published.confirmed[-1]] = before + countdown
    return due


@pytest.mark.timeout(900)
@pytest.mark.chaos_long
def test_a_node_restarted_with_tasks_in_flight_and_delayed_loses_none_and_runs_none_early(cluster_platform):
    """Given tasks draining from orders and countdown tasks waiting in the delay
    levels, when the node that leads them is stopped gracefully (tasks and
    countdowns are published during the outage too) and started again, then
    every confirmed task is processed, none lost, no side effect twice, and no
    delayed task runs before its due time, including those that fell due while
    the node was down."""
    platform = cluster_platform
    layout = platform.vhost.layout
    platform.start()
    work = chaos_task(platform.client())
    published = Published()
    started = time.monotonic()
    count = sized(100, 1500)
    published.many(work, count, seconds=0.02)
    due = publish_delayed(published, work, sized(20, 200), first=1.0, span=sized(14.0, 45.0))
    wait_for(lambda: done_count(platform.ledger) >= count // 5, timeout=60, message="some progress first")
    node = platform.vhost.leader("orders")
    stopped_at = time.time()
    control.stop(layout, node)
    stop_s = time.time() - stopped_at
    for _ in range(sized(10, 100)):
        published.one(work)
    due.update(publish_delayed(published, work, sized(5, 50), first=0.5, span=sized(3.0, 10.0)))
    control.start(layout, node)
    restarted_at = time.time()
    settle(platform, published, timeout=sized(120, 400), where=platform.vhost.waiting)
    first = first_attempts(platform.ledger)
    early = {
        task_id: due[task_id] - first[task_id] for task_id in due if first.get(task_id, 1e18) < due[task_id]
    }
    lateness = [first[task_id] - due[task_id] for task_id in due if task_id in first]
    ledger = ledger_of(
        platform,
        "node-restart",
        f"rabbitmqctl stop of node {node.number} (leader of orders), then start, with {len(due)} countdowns",
        published,
        started,
        stop_s=stop_s,
        outage_s=restarted_at - stopped_at,
        delayed=len(due),
        due_while_down=sum(1 for moment in due.values() if stopped_at <= moment <= restarted_at),
        delayed_max_late_s=max(lateness, default=0),
        delayed_early=len(early),
    )
    ledger.check()
    assert not early, f"delayed tasks ran early (seconds): {sorted(early.values())[:5]}"
    assert any(stopped_at <= moment <= restarted_at for moment in due.values()), (
        "no delayed task fell due while the node was down: the scenario proved nothing"
    )
