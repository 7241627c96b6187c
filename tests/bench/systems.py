"""The systems a side can run: the platform, stock Celery, Dramatiq, raw py-amqp.

A :class:`System` knows its queue, how to declare it exactly as its worker
will, how to encode a task message for it, and how to start its worker. Cases
combine systems with workloads; nothing here measures.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import amqp

from tests.bench.broker import (
    celery_messages,
    declare_kombu,
    declare_queue,
    dramatiq_messages,
    publish_pipelined,
)
from tests.bench.processes import (
    CONCURRENCY,
    BenchProcess,
    base_environment,
    celery_worker_command,
    dramatiq_worker_command,
    layout_worker_command,
    platform_environment,
)
from tests.support.broker import Vhost

#: Stock app module, for ``celery -A``.
STOCK_APP = "tests.bench.apps.stock"
#: Dramatiq actors module, for ``dramatiq``.
PEER_MODULE = "tests.bench.apps.peer"


@dataclass(frozen=True)
class System:
    """One task system in one configuration."""

    name: str
    #: ``platform``, ``stock``, ``dramatiq`` or ``raw``.
    kind: str
    description: str
    #: Stock Celery configuration (see :mod:`tests.bench.apps.stock`).
    stock_mode: str = ""
    #: The platform's idempotency store on or off.
    idempotency: bool = True
    #: Prefetch of the raw consumer.
    prefetch: int = 0
    #: Worker task events (``task-received``, ``-started``, ``-succeeded``) on or off.
    events: bool = True
    #: Celery's ``task-sent`` event per published task (``PLATFORM_TASK_SENT_EVENTS``).
    sent_events: bool = False
    #: Platform worker layout (``PLATFORM_WORKER_LAYOUT``) run as a worker group; empty: today's
    #: ``celery worker -P prefork -c 2`` with prefetch multiplier 1.
    layout: str = ""
    #: Prefetch multiplier of a layout side (``PLATFORM_WORKER_PREFETCH``; 0: the layout's own).
    layout_prefetch: int = 0
    #: Worker processes (solo) or slots of a layout side (``PLATFORM_CONCURRENCY``).
    layout_processes: int = CONCURRENCY

    @property
    def queue(self) -> str:
        return "celery" if self.kind == "stock" else "bench"

    @property
    def exchange(self) -> str:
        return {"platform": "platform.tasks", "stock": "celery"}.get(self.kind, "")

    @property
    def routing_key(self) -> str:
        return self.queue

    def environment(self, vhost: Vhost, folder: Path, **extra: str) -> dict[str, str]:
        """Environment of this system's processes; task marks go into ``folder``."""
        marks = {
            "BENCH_COUNTER": str(folder / "counter"),
            "BENCH_FAILURES": str(folder / "failures"),
            "BENCH_STAMPS": str(folder / "stamps"),
            "BENCH_VHOST": vhost.name,
            **extra,
        }
        if self.kind == "platform":
            if not self.idempotency:
                marks["PLATFORM_IDEMPOTENCY"] = "false"
            if not self.events:
                marks["BENCH_PLATFORM_EVENTS"] = "off"
            if self.sent_events:
                marks["PLATFORM_TASK_SENT_EVENTS"] = "true"
            if self.layout:
                marks["PLATFORM_WORKER_LAYOUT"] = self.layout
                marks["PLATFORM_WORKER_PREFETCH"] = str(self.layout_prefetch)
                marks["PLATFORM_CONCURRENCY"] = str(self.layout_processes)
            return platform_environment(vhost.url, folder, **marks)
        if self.kind == "stock":
            return base_environment(vhost.url, BENCH_STOCK_MODE=self.stock_mode, **marks)
        if self.kind == "dramatiq":
            # pika wants the vhost URL-quoted, which Vhost.url already does.
            return base_environment(vhost.url, **marks)
        return base_environment(vhost.url, **marks)

    def declare(self, vhost: Vhost, env: dict[str, str]) -> None:
        """Declare the queues exactly as this system's worker will."""
        if self.kind == "platform":
            from kombu import Connection

            from config.app import build_topology
            from config.settings import load_settings
            from workers.broker import declare_topology

            with Connection(vhost.url) as connection:
                declare_topology(connection, build_topology(load_settings(env)))
        elif self.kind == "stock":
            from tests.bench.apps.stock import task_queue

            declare_kombu(vhost, [task_queue(self.stock_mode)])
        elif self.kind == "dramatiq":
            from dramatiq.common import xq_name

            declare_queue(
                vhost,
                self.queue,
                {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(self.queue)},
            )
        else:
            declare_queue(vhost, self.queue, {"x-queue-type": "quorum"})

    def messages(self, task: str, calls: Iterable[list[Any]]) -> Iterator[amqp.Message]:
        """Task messages in this system's format, one per argument list."""
        if self.kind == "dramatiq":
            return dramatiq_messages(self.queue, task, calls)
        return celery_messages(task, ((args, {}) for args in calls))

    def fill(self, vhost: Vhost, task: str, calls: Iterable[list[Any]]) -> int:
        """Pre-enqueue one ``task`` message per argument list; returns how many."""
        return publish_pipelined(vhost, self.exchange, self.routing_key, self.messages(task, calls))

    def worker(self, env: dict[str, str], folder: Path, graceful: bool = False) -> BenchProcess:
        """This system's worker, not yet started."""
        if self.kind == "platform" and self.layout:
            command = layout_worker_command(self.queue)
        elif self.kind == "platform":
            command = celery_worker_command("config", self.queue, "platform")
        elif self.kind == "stock" and self.layout == "solo":
            command = [sys.executable, "-m", "tests.bench.tools.stock_group", self.queue]
        elif self.kind == "stock":
            command = celery_worker_command(STOCK_APP, self.queue, "stock")
        elif self.kind == "dramatiq":
            command = dramatiq_worker_command(PEER_MODULE, self.queue)
        else:
            command = [
                sys.executable, "-m", "tests.bench.tools.raw_consumer",
                "--queue", self.queue, "--prefetch", str(self.prefetch),
            ]  # fmt: skip
        return BenchProcess(command, env, folder, name=f"{self.name}-worker", graceful=graceful)


PLATFORM = System("platform", "platform", "platform worker, full lifecycle (quorum, confirms, late ack)")
PLATFORM_NO_IDEMPOTENCY = System(
    "platform-no-idem",
    "platform",
    "platform worker with PLATFORM_IDEMPOTENCY=false (no SQLite completion mark)",
    idempotency=False,
)
PLATFORM_NO_EVENTS = System(
    "platform-no-events",
    "platform",
    "platform worker with worker task events off (bench-only switch)",
    events=False,
)
PLATFORM_SENT_EVENTS = System(
    "platform-sent-events",
    "platform",
    "platform with PLATFORM_TASK_SENT_EVENTS=true (a task-sent event per published task)",
    sent_events=True,
)
PLATFORM_SOLO = System(
    "platform-solo",
    "platform",
    "platform, default layout: 2 solo worker processes (PLATFORM_WORKER_LAYOUT=solo), prefetch 2 each",
    layout="solo",
)
PLATFORM_SOLO_PREFETCH_1 = System(
    "platform-solo-p1",
    "platform",
    "platform, 2 solo worker processes with PLATFORM_WORKER_PREFETCH=1 (no message waits behind another)",
    layout="solo",
    layout_prefetch=1,
)
STOCK_DEFAULTS = System(
    "stock-defaults", "stock", "stock Celery 5.7 defaults (early ack, prefetch x4, classic queue)", "defaults"
)
STOCK_ACKS_LATE_QUORUM = System(
    "stock-late-quorum",
    "stock",
    "stock Celery, acks_late + prefetch multiplier 1, quorum queue on a topic exchange",
    "acks_late_quorum",
)
PLATFORM_SOLO_PREFETCH_4 = System(
    "platform-solo-p4",
    "platform",
    "platform, 2 solo worker processes with PLATFORM_WORKER_PREFETCH=4 (up to 3 messages wait behind a running one)",
    layout="solo",
    layout_prefetch=4,
)
PLATFORM_SOLO_PREFETCH_8 = System(
    "platform-solo-p8",
    "platform",
    "platform, 2 solo worker processes with PLATFORM_WORKER_PREFETCH=8 (up to 7 messages wait behind a running one)",
    layout="solo",
    layout_prefetch=8,
)
STOCK_SOLO = System(
    "stock-solo",
    "stock",
    "stock Celery in the platform's default layout: 2 solo worker processes, acks_late, prefetch 2 each, "
    "quorum queue; none of the platform's lifecycle",
    "solo_late_quorum",
    layout="solo",
)
STOCK_ACKS_LATE_CLASSIC = System(
    "stock-late-classic",
    "stock",
    "stock Celery, acks_late + prefetch multiplier 1, classic queue",
    "acks_late_classic",
)
STOCK_CONFIRM = System(
    "stock-confirm",
    "stock",
    "stock Celery, confirm_publish=True, quorum queue",
    "confirm",
)
DRAMATIQ = System("dramatiq", "dramatiq", "Dramatiq RabbitmqBroker defaults, 2 processes x 1 thread")
RAW_PREFETCH_100 = System(
    "raw-p100", "raw", "raw py-amqp consume+ack loop, prefetch 100, quorum queue", prefetch=100
)
RAW_PREFETCH_1 = System("raw-p1", "raw", "raw py-amqp consume+ack loop, prefetch 1, quorum queue", prefetch=1)
