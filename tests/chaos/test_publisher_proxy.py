"""Chaos between publisher and broker: a TCP proxy on loopback that blackholes, resets and delays.

The publisher reaches RabbitMQ (the machine's node, a fresh vhost) only through
:class:`tests.support.tcp_proxy.FaultyProxy`; the worker connects directly.
Every ``delay()`` must end in a confirm or a ``PublishError`` within a bounded
time, never a confirm for a message the broker does not hold: the ledger
checks that every confirmed id was processed.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from config.app import create_app
from config.settings import load_settings
from tests.chaos.conftest import sized
from tests.support.broker import AMQP_HOST, AMQP_PASSWORD, AMQP_USER
from tests.support.chaos_ledger import ChaosLedger, dead_letter_classes
from tests.support.chaos_run import CHAOS_TASKS, Published, chaos_task, wait_settled
from tests.support.tcp_proxy import faulty_proxy

pytestmark = pytest.mark.broker

#: The publisher's confirm timeout in this scenario (PLATFORM_PUBLISH_TIMEOUT).
PUBLISH_TIMEOUT = 2.0
#: Longest a publish may take: the first try and the retry policy's two more, each
#: bounded by the timeouts, plus slack for a loaded machine.
PUBLISH_BOUND = 4 * PUBLISH_TIMEOUT + 10


def test_a_publisher_cut_off_by_blackhole_reset_or_delay_never_gets_a_false_confirm(
    vhost, start_worker, platform_env, tmp_path: Path
):
    """Given a publisher whose connection runs through a faulty proxy, when the
    proxy delays every chunk, blackholes all traffic, resets every connection
    (also in the middle of a burst) and heals, then each delay() returns a
    confirm or raises PublishError within PUBLISH_BOUND seconds, and every
    confirmed task is processed: none lost, no side effect twice."""
    ledger_file, state_db = tmp_path / "ledger.txt", tmp_path / "state.sqlite3"
    start_worker(concurrency=2, PLATFORM_TASK_MODULES=CHAOS_TASKS)
    host, _, port = AMQP_HOST.partition(":")
    published = Published()
    phases: dict[str, float] = {}
    started = time.monotonic()
    with faulty_proxy(host, int(port or 5672)) as proxy:
        url = f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@127.0.0.1:{proxy.port}/{urllib.parse.quote(vhost.name, safe='')}"
        app = create_app(
            load_settings(
                {**platform_env, "CELERY_BROKER_URL": url, "PLATFORM_PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT)}
            ),
            main="chaos-proxy-publisher",
        )
        try:
            work = chaos_task(app)
            for _ in range(sized(10, 100)):
                published.one(work)
            proxy.delay(0.2)
            for _ in range(sized(5, 20)):
                published.one(work)
            proxy.blackhole()
            before = len(published.refused)
            for _ in range(sized(1, 5)):
                published.one(work)
            phases["refused_in_blackhole"] = len(published.refused) - before
            proxy.heal()
            proxy.reset()
            for _ in range(sized(5, 50)):
                published.one(work)
            cutter = threading.Timer(0.05, proxy.reset)
            cutter.start()
            for _ in range(sized(30, 300)):
                published.one(work)
            cutter.join()
            for _ in range(sized(5, 50)):
                published.one(work)
        finally:
            app.close()
    wait_settled(published.confirmed, state_db, lambda: vhost.depth("orders.dlq"), timeout=sized(60, 300))
    ledger = ChaosLedger.build(
        "publisher-proxy",
        "loopback proxy: delay 0.2 s, blackhole, reset, reset mid-burst",
        published.confirmed,
        published.refused,
        state_db,
        ledger_file,
        dead_letter_classes(vhost.take_all("orders.dlq")),
        started,
        {"max_publish_s": max(published.durations), **phases},
    )
    ledger.write()
    ledger.check()
    assert max(published.durations) < PUBLISH_BOUND, f"a publish took {max(published.durations):.1f}s"
    assert phases["refused_in_blackhole"] >= 1, "the blackhole never made a publish fail: nothing was shown"
    assert not ledger.dead_lettered, ledger.summary()
