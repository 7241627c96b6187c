"""Chaos on the cluster: a memory alarm and a disk alarm while publishers publish.

RabbitMQ blocks every publishing connection of the cluster while a resource
alarm is on (alarms are cluster-wide): it stops reading from them, so a
publish is neither routed nor confirmed. The platform's publisher must then
fail visibly (``PublishError`` after ``PLATFORM_PUBLISH_TIMEOUT``, its retries
included), never get a confirm for a message the broker does not hold; once
the alarm clears, publishes are confirmed again and every confirmed task is
processed. The alarm is raised on the private test cluster only
(``rabbitmqctl set_vm_memory_high_watermark 0`` / ``set_disk_free_limit``),
and RabbitMQ's defaults are restored after.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import LONG, sized
from tests.support.chaos_run import Published, chaos_task
from tests.support.cluster_chaos import ledger_of, settle
from tests.support.cluster_faults import resource_alarm
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker

#: The publishers' confirm timeout in this scenario (PLATFORM_PUBLISH_TIMEOUT).
PUBLISH_TIMEOUT = 1.0
#: Longest a publish may take while blocked: the first try and the retry policy's two
#: more, each waiting out the confirm timeout, then the close of the blocked connection
#: (the broker reads nothing, so the close waits out the read timeout) and a reconnect:
#: measured about 9x the timeout (18 s with 2 s), plus slack for a loaded machine.
PUBLISH_BOUND = 9 * PUBLISH_TIMEOUT + 10


@pytest.mark.parametrize("kind", ["memory", pytest.param("disk", marks=pytest.mark.chaos_long)])
def test_a_resource_alarm_makes_publishes_fail_visibly_and_all_confirmed_work_runs_after(
    cluster_platform, kind: str
):
    """Given a worker and a publisher on the cluster, when a memory (or disk)
    alarm goes off on node 1, then publishes on the publisher's open connection
    (and, in the long form, on a new one) raise PublishError within PUBLISH_BOUND seconds (a
    confirm, if any, is for a message the broker holds: the ledger finds it
    processed); once the alarm clears, publishes are
    confirmed again, and the ledger shows every confirmed task processed, none
    lost, no side effect twice."""
    platform = cluster_platform
    layout = platform.vhost.layout
    platform.start()
    timeout = {"PLATFORM_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT)}
    work = chaos_task(platform.client(**timeout))
    published, during, after = Published(), Published(), Published()
    started = time.monotonic()
    published.many(work, sized(20, 500))
    for _ in range(sized(2, 20)):
        published.one(work)
    with resource_alarm(layout, layout.node(1), kind):
        alarm_at = time.monotonic()
        for _ in range(sized(1, 3)):
            during.one(work)
        if LONG:  # a publisher that connects during the alarm
            during.one(chaos_task(platform.client(**timeout)))
        alarm_s = time.monotonic() - alarm_at
    cleared_at = time.monotonic()
    wait_for(
        lambda: after.one(work),
        timeout=60,
        interval=0.5,
        message="a confirmed publish once the alarm cleared",
    )
    first_confirm_s = time.monotonic() - cleared_at
    for _ in range(sized(5, 50)):
        after.one(work)
    published.merge(during, after)
    settle(platform, published, timeout=sized(90, 300))
    ledger = ledger_of(
        platform,
        f"{kind}-alarm",
        f"{kind} alarm on node 1 ({alarm_s:.0f} s), publishing on an open and a new connection",
        published,
        started,
        refused_during_alarm=len(during.refused),
        confirmed_during_alarm=len(during.confirmed),
        max_publish_during_alarm_s=max(during.durations),
        first_confirm_after_clear_s=first_confirm_s,
    )
    ledger.check()
    assert during.refused, f"no publish failed during the {kind} alarm: nothing was shown to fail"
    assert max(during.durations) < PUBLISH_BOUND, (
        f"a publish during the alarm took {max(during.durations):.1f}s"
    )
