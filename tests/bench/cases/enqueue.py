"""Case 2, enqueue: publishing N no-op tasks with publisher confirms.

Each side is a fresh publisher process on a fresh vhost whose queue already
exists (declared as the system's worker would). One-at-a-time sides wait for
each confirm; ``platform-batch`` is ``task.apply_many`` (pipelined confirms),
``raw-pipelined`` is py-amqp with 500 confirms in flight: the broker's limit.
"""

from __future__ import annotations

from tests.bench.broker import fresh_vhost
from tests.bench.processes import run_tool
from tests.bench.runner import Case, Metric, Ratio, Side, SideRun
from tests.bench.sizes import Sizes
from tests.bench.systems import PLATFORM, PLATFORM_SENT_EVENTS, STOCK_CONFIRM, System

#: A raw py-amqp publisher on a plain quorum queue.
RAW = System("raw", "raw", "raw py-amqp publisher, quorum queue")


def enqueue_side(name: str, description: str, system: System, how: str) -> Side:
    """A side publishing ``sizes.enqueue_tasks`` through ``system`` the ``how`` way."""

    def measure(run: SideRun) -> dict[str, float]:
        count = run.sizes.enqueue_tasks
        with fresh_vhost() as vhost:
            env = system.environment(vhost, run.folder, **run.profile_environment())
            system.declare(vhost, env)
            kind = "stock" if system.kind == "stock" else system.kind
            result = run_tool(
                "publisher", env, ["enqueue", kind, how, str(count)], run.folder, 120 + count / 100
            )
        return {"throughput": result["sent"] / result["seconds"], "seconds": result["seconds"]}

    return Side(name, description, measure)


def case(sizes: Sizes) -> Case:
    return Case(
        name="enqueue",
        title=f"enqueue {sizes.enqueue_tasks:,} no-op tasks with publisher confirms",
        sides=[
            enqueue_side("platform-one", "platform apply_async, one confirm each", PLATFORM, "one"),
            enqueue_side(
                "stock-confirm", "stock Celery apply_async, confirm_publish=True", STOCK_CONFIRM, "one"
            ),
            enqueue_side("platform-batch", "platform task.apply_many (batch mode)", PLATFORM, "batch"),
            enqueue_side("raw-one", "raw py-amqp basic_publish_confirm, one at a time", RAW, "one"),
            enqueue_side("raw-pipelined", "raw py-amqp, 500 unconfirmed in flight", RAW, "pipelined"),
            *(
                [
                    enqueue_side(
                        "platform-one-sent-events",
                        "platform apply_async with PLATFORM_TASK_SENT_EVENTS=true",
                        PLATFORM_SENT_EVENTS,
                        "one",
                    )
                ]
                if sizes.explainers
                else []
            ),
        ],
        metrics=[
            Metric("throughput", "tasks/s", higher_is_better=True),
            Metric("seconds", "s", higher_is_better=False),
        ],
        ratios=[
            Ratio("throughput", "platform-one", "stock-confirm", 1.0, ">=", "must"),
            Ratio("throughput", "platform-batch", "stock-confirm", 5.0, ">=", "must"),
            Ratio("throughput", "platform-one", "raw-one"),
            Ratio("throughput", "platform-batch", "raw-pipelined"),
            *([Ratio("throughput", "platform-one-sent-events", "stock-confirm")] if sizes.explainers else []),
        ],
        profile_side="platform-one",
        notes=["every queue is a quorum queue; messages are persistent Celery protocol 2 no-op tasks"],
    )
