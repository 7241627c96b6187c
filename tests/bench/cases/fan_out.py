"""Case 8, fan-out: one publisher, N events, each delivered to 3 subscriber queues.

Each side gets a fresh vhost and a fresh publisher process
(:mod:`tests.bench.tools.fan_out`) that publishes N ``order.created`` events
and stops the clock when a passive ``queue.declare`` sees all N in each of the
3 subscriber queues. Nobody consumes them.

- ``platform-batch``: the platform's topology declared from a subscriptions
  file with services ``a``, ``b`` and ``c`` subscribed to ``order.created``
  (queues ``a.events``, ``b.events``, ``c.events``: quorum, each with its retry
  ladder and DLQ), then ``tasks.events.publish_many`` (schema validation,
  CloudEvents envelope, 500 confirms in flight). The platform also binds its
  event log, the stream ``platform.events.log``, to every event.
- ``platform-one``: the same, ``tasks.events.publish`` one event at a time,
  each returning once confirmed (``fan_out_one_events`` of them).
- ``raw-pipelined``: py-amqp, a topic exchange bound to 3 plain quorum queues,
  the same headers and body, 500 unconfirmed in flight (like ``enqueue``'s).
- ``platform-batch-no-log`` (full runs): ``platform-batch`` with
  ``PLATFORM_EVENT_LOG_RETENTION=0``, which leaves the event log out, to show
  what writing every event to the stream as well costs.
"""

from __future__ import annotations

from pathlib import Path

from tests.bench.broker import declare_fan_out, fresh_vhost
from tests.bench.processes import run_tool
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import PLATFORM, System

#: The subscribing services; each gets the queue ``<service>.events``.
SERVICES = ("a", "b", "c")
QUEUES = tuple(f"{service}.events" for service in SERVICES)
#: The event type published; every service subscribes to it.
EVENT_TYPE = "order.created"
#: The raw side's topic exchange.
RAW_EXCHANGE = "bench.events"

RAW = System("raw", "raw", "raw py-amqp publisher, topic exchange bound to 3 quorum queues")


def write_subscriptions(folder: Path) -> Path:
    """A subscriptions file: services a, b and c each handle ``order.created``."""
    lines = []
    for service in SERVICES:
        lines += [
            f"[services.{service}]",
            f'events = {{ "{EVENT_TYPE}" = "bench.events.{service}" }}',
            'modules = ["tests.bench.apps.platform_tasks"]',
            "",
        ]
    path = folder / "subscriptions.toml"
    path.write_text("\n".join(lines))
    return path


def fan_out_once(how: str, count: int, run: SideRun, **settings: str) -> dict[str, float]:
    """Publish ``count`` events the ``how`` way in a fresh vhost; throughput until all 3 queues hold them."""
    system = RAW if how == "raw" else PLATFORM
    with fresh_vhost() as vhost:
        if system.kind == "platform":
            subscriptions = str(write_subscriptions(run.folder))
            env = system.environment(
                vhost,
                run.folder,
                PLATFORM_SUBSCRIPTIONS_FILE=subscriptions,
                **settings,
                **run.profile_environment(),
            )
            system.declare(vhost, env)
        else:
            env = system.environment(vhost, run.folder, **run.profile_environment())
            declare_fan_out(vhost, RAW_EXCHANGE, EVENT_TYPE, QUEUES)
        arguments = [how, str(count), "--queues", ",".join(QUEUES), "--exchange", RAW_EXCHANGE]
        result = run_tool("fan_out", env, arguments, run.folder, 120 + count / 50)
    return {
        "throughput": result["sent"] / result["seconds"],
        "seconds": result["seconds"],
        "publish_seconds": result["publish_seconds"],
    }


def fan_out_side(name: str, description: str, how: str, one: bool = False, **settings: str) -> Side:
    def measure(run: SideRun) -> dict[str, float]:
        count = run.sizes.fan_out_one_events if one else run.sizes.fan_out_events
        return fan_out_once(how, count, run, **settings)

    return Side(name, description, measure)


def case(sizes: Sizes) -> Case:
    explain = sizes.explainers
    return Case(
        name="fan_out",
        title=f"fan-out: publish {sizes.fan_out_events:,} events, each to 3 subscriber queues",
        sides=[
            fan_out_side(
                "platform-batch", "platform tasks.events.publish_many, subscribers a, b, c", "platform-batch"
            ),
            fan_out_side("raw-pipelined", RAW.description + ", 500 in flight", "raw"),
            fan_out_side(
                "platform-one",
                f"platform tasks.events.publish, one confirm each ({sizes.fan_out_one_events:,} events)",
                "platform-one",
                one=True,
            ),
            *(
                [
                    fan_out_side(
                        "platform-batch-no-log",
                        "platform-batch with PLATFORM_EVENT_LOG_RETENTION=0 (no event log stream)",
                        "platform-batch",
                        PLATFORM_EVENT_LOG_RETENTION="0",
                    )
                ]
                if explain
                else []
            ),
        ],
        metrics=[
            Metric("throughput", "events/s", higher_is_better=True),
            Metric("seconds", "s", higher_is_better=False),
            Metric("publish_seconds", "s", higher_is_better=False),
        ],
        ratios=[
            Ratio("throughput", "platform-batch", "raw-pipelined", 0.5, ">=", "must"),
            Ratio("throughput", "platform-one", "raw-pipelined"),
            *(
                [
                    Ratio("throughput", "platform-batch-no-log", "raw-pipelined"),
                    Ratio("throughput", "platform-batch", "platform-batch-no-log"),
                ]
                if explain
                else []
            ),
        ],
        profile_side="platform-batch",
        notes=[
            "the clock stops when every subscriber queue holds all N events (passive queue.declare, polled "
            "every 2 ms); one warm-up event goes first on every side",
            f"platform-one publishes {sizes.fan_out_one_events:,} events, one confirm each; its throughput is "
            "comparable, its seconds are not",
            "the platform also writes every event to its event log stream (platform.events.log); "
            "the raw side has no stream",
        ],
    )
