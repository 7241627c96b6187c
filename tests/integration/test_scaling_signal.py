"""The scaling signal against a real RabbitMQ: due work counts, backing off, dead and delayed work don't.

Messages are published with py-amqp straight into the queues (no worker
runs), after the topology is declared. The management API refreshes its
counts every few seconds, so each test first waits until it reports what was
published, then reads the signal and the metrics.
"""

from __future__ import annotations

import shutil
import subprocess

import amqp
import pytest

from config.app import build_topology
from config.settings import Settings, load_settings
from config.topology import Topology
from tests.e2e.conftest import management_url
from tests.support.broker import Vhost
from tests.support.wait import wait_for
from workers.broker import declare_topology, kombu_connection
from workers.ops.metrics import collect, management_counts, render
from workers.scaling.signal import SignalUnavailable, read_signals

pytestmark = pytest.mark.broker


@pytest.fixture
def platform(platform_env: dict[str, str]) -> tuple[Settings, Topology]:
    """Settings and a declared topology (orders, payments, default) on this test's vhost."""
    settings = load_settings({**platform_env, "PLATFORM_MANAGEMENT_URL": management_url()})
    topology = build_topology(settings, subscriptions=())
    with kombu_connection(settings.broker_url, settings.publish_timeout) as connection:
        declare_topology(connection, topology)
    return settings, topology


def publish(vhost: Vhost, queue: str, count: int) -> None:
    """``count`` small persistent messages into ``queue`` (default exchange), each confirmed."""
    with vhost.connect() as connection:
        channel = connection.channel()
        channel.confirm_select()
        for _ in range(count):
            message = amqp.Message(b"[[], {}, {}]", content_type="application/json", delivery_mode=2)
            channel.basic_publish_confirm(message, exchange="", routing_key=queue, mandatory=True)


def reported(settings: Settings, topology: Topology, wanted: dict[str, int]) -> bool:
    """Whether the management API reports ``wanted`` ready messages in each of those queues."""
    counts = {count.name: count.ready for count in management_counts(settings, topology)()}
    return all(counts.get(name) == ready for name, ready in wanted.items())


def scraped(settings: Settings, topology: Topology) -> str:
    """What a Prometheus scrape of the metrics would read now."""
    return render(collect(settings, topology))


def sample(text: str, series: str) -> float | None:
    """The value of the sample written exactly ``series`` (name and labels), or None."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_backing_off_dead_and_delayed_messages_are_not_due_work_and_ready_ones_are(
    vhost: Vhost, platform: tuple[Settings, Topology]
) -> None:
    """Given 300 messages in orders.retry.1, 20 in orders.dlq and 20 in the delay
    level platform.delay.20, and nothing in orders: the due backlog of orders is 0,
    in the signal and in the metrics. Then 50 ready in orders: it is 50, and the
    advised pool for orders (no consumer, min 1) is 1."""
    settings, topology = platform
    publish(vhost, "orders.retry.1", 300)
    publish(vhost, "orders.dlq", 20)
    publish(vhost, "platform.delay.20", 20)
    parked = {"orders.retry.1": 300, "orders.dlq": 20, "platform.delay.20": 20}
    wait_for(
        lambda: reported(settings, topology, {**parked, "orders": 0}),
        timeout=15,
        message="the management API to report the parked messages",
    )

    signals = read_signals(management_counts(settings, topology), topology.names)

    assert set(signals) == {"orders", "payments", "default"}
    assert (signals["orders"].ready, signals["orders"].unacked, signals["orders"].due_backlog) == (0, 0, 0)
    text = scraped(settings, topology)
    assert sample(text, 'platform_queue_due_backlog{queue="orders"}') == 0
    assert (
        sample(text, 'platform_queue_messages_ready{kind="retry",queue="orders.retry.1",work_queue="orders"}')
        == 300
    )
    assert 'platform_queue_due_backlog{queue="orders.retry.1"}' not in text

    publish(vhost, "orders", 50)
    wait_for(
        lambda: reported(settings, topology, {**parked, "orders": 50}),
        timeout=15,
        message="the management API to report 50 ready in orders",
    )

    signals = read_signals(management_counts(settings, topology), topology.names)

    assert (signals["orders"].due_backlog, signals["orders"].consumers) == (50, 0)
    assert signals["payments"].due_backlog == 0
    text = scraped(settings, topology)
    assert sample(text, 'platform_queue_due_backlog{queue="orders"}') == 50
    assert sample(text, 'platform_scale_desired_workers{queue="orders"}') == 1
    assert sample(text, "platform_metrics_up") == 1
    if shutil.which("promtool"):
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_management_api_that_does_not_answer_is_one_clear_error_without_the_password() -> None:
    """Given a management URL with a password where nothing listens, reading the
    signal raises SignalUnavailable naming the host, and the password is nowhere in it."""
    settings = load_settings({"PLATFORM_MANAGEMENT_URL": "http://ops:s3cret@127.0.0.1:9/api/"})
    topology = build_topology(settings, subscriptions=())

    with pytest.raises(SignalUnavailable) as unavailable:
        read_signals(management_counts(settings, topology), topology.names)

    assert "127.0.0.1:9" in str(unavailable.value)
    assert "s3cret" not in str(unavailable.value)
