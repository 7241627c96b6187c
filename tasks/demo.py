"""A guided tour: ``python -m tasks.demo`` (or ``make demo``).

Sends sample work to every service queue, waits until it has settled, and
prints what happened: which tasks completed, which were retried, and what sits
in which dead-letter queue with its ``x-error-class``. Running workers are
needed (``make up`` starts them).

The sample work shows each outcome of the lifecycle:

- successes on every queue;
- a payment whose gateway times out twice (``TransientError``), then succeeds;
- a reservation of a sold-out item (a business rule): dead-lettered at once;
- a confirmation to an address without ``@`` (an unexpected ``ValueError``):
  retried twice as an unknown error, then dead-lettered.

How "settled" is seen: a task counts as completed once its id is in the
idempotency store the workers write (``PLATFORM_STATE_URL``), and as
dead-lettered once it is in ``<queue>.dlq``. With ``PLATFORM_IDEMPOTENCY=false``
nothing records completions, so a task not dead-lettered counts as completed
once its work and delay queues have stayed empty for a few polls. Dead letters are read without
being consumed (``basic_get``, then a requeueing reject), so the demo leaves
them for ``make dlq-list`` and Flower.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from amqp.exceptions import NotFound
from kombu import Connection

from config import app
from config.app import platform_config
from config.settings import Settings
from config.topology import Topology, dead_letter_queue
from tasks import analytics, email, inventory, orders, payments  # noqa: F401 - registers the tasks
from tasks.events import publish as publish_event
from workers.broker import declare_topology
from workers.delivery.headers import ERROR_CLASS, ERROR_MESSAGE, ERROR_TYPE, RETRY_COUNT, TASK_ID, TASK_NAME
from workers.delivery.idempotency import open_store
from workers.events.receive import handler_task_id

#: Seconds to wait for the work to settle, unless ``--timeout`` says otherwise.
DEFAULT_TIMEOUT = 90.0
#: Most dead letters read from one queue for the summary.
BROWSE_LIMIT = 500


@dataclass(frozen=True)
class Sample:
    """One task to send, and what should become of it."""

    queue: str
    task: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    #: "completed" or the expected ``x-error-class`` of its dead letter.
    expect: str
    #: What a reader should learn from it.
    story: str

    @property
    def call(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task.rsplit('.', 1)[-1]}({', '.join(parts)})"


def sample_work(run: str) -> list[Sample]:
    """The demo's tasks; ``run`` makes the order ids of this run unique."""

    def order(n: int) -> str:
        return f"order-{run}-{n}"

    ok = "completed"
    return [
        Sample("orders", "tasks.orders.create_order", (order(1), 25.0), {}, ok, "succeeds"),
        Sample("orders", "tasks.orders.create_order", (order(2), 99.5), {}, ok, "succeeds"),
        Sample("payments", "tasks.payments.charge", (order(1), 25.0), {}, ok, "succeeds"),
        Sample(
            "payments",
            "tasks.payments.charge",
            (order(2), 99.5),
            {"fail_times": 2},
            ok,
            "times out twice (transient), retried with backoff, then succeeds",
        ),
        Sample("inventory", "tasks.inventory.reserve", (order(1), "book", 1), {}, ok, "succeeds"),
        Sample(
            "inventory",
            "tasks.inventory.reserve",
            (order(2), "lamp", 1),
            {},
            "permanent",
            "sold out: breaks a business rule, to inventory.dlq at once",
        ),
        Sample("email", "tasks.email.send_confirmation", (order(1), "ada@example.com"), {}, ok, "succeeds"),
        Sample(
            "email",
            "tasks.email.send_confirmation",
            (order(2), "not-an-address"),
            {},
            "unknown",
            "no '@': unexpected error, retried twice, then to email.dlq",
        ),
        Sample(
            "analytics", "tasks.analytics.track", ("order.created", {"order": order(1)}), {}, ok, "succeeds"
        ),
        Sample("analytics", "tasks.analytics.track", ("page.viewed", {"path": "/"}), {}, ok, "succeeds"),
    ]


@dataclass
class DeadLetterSummary:
    """A dead-lettered message as the summary shows it (its headers only)."""

    queue: str
    task_id: str
    task_name: str
    error_class: str
    error_type: str
    error_message: str
    retries: int

    @classmethod
    def from_headers(cls, queue: str, headers: Mapping[str, Any]) -> DeadLetterSummary:
        return cls(
            queue=queue,
            task_id=str(headers.get(TASK_ID, "?")),
            task_name=str(headers.get(TASK_NAME, "?")),
            error_class=str(headers.get(ERROR_CLASS, "?")),
            error_type=str(headers.get(ERROR_TYPE, "?")),
            error_message=str(headers.get(ERROR_MESSAGE, "")),
            retries=int(headers.get(RETRY_COUNT, 0) or 0),
        )


@dataclass
class Progress:
    """What has become of the sent tasks so far."""

    completed: set[str] = field(default_factory=set)
    dead: dict[str, DeadLetterSummary] = field(default_factory=dict)
    #: Dead letters in the DLQs that this run did not send.
    older_dead: dict[str, int] = field(default_factory=dict)

    def settled(self, task_ids: Iterable[str]) -> bool:
        return all(task_id in self.completed or task_id in self.dead for task_id in task_ids)


def browse_dead_letters(
    connection: Connection, queue: str, limit: int = BROWSE_LIMIT
) -> list[DeadLetterSummary]:
    """Read the headers of the messages in ``queue`` without consuming them.

    Each message is fetched unacknowledged, and all are rejected with requeue at
    the end: RabbitMQ puts them back in their original order. Dead-letter queues
    are classic queues, so this costs no delivery-limit budget.
    """
    channel = connection.channel()
    taken = []
    try:
        while len(taken) < limit:
            message = channel.basic_get(queue, no_ack=False)
            if message is None:
                break
            taken.append(message)
        return [DeadLetterSummary.from_headers(queue, message.headers or {}) for message in taken]
    finally:
        for message in taken:
            channel.basic_reject(message.delivery_tag, requeue=True)
        channel.close()


def ready_messages(connection: Connection, queue: str) -> int | None:
    """Ready messages in ``queue`` (a passive declare), or None if it is missing."""
    channel = connection.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except NotFound:
        return None
    finally:
        if channel.is_open:
            channel.close()


def consumers(connection: Connection, queue: str) -> int:
    channel = connection.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).consumer_count
    except NotFound:
        return 0
    finally:
        if channel.is_open:
            channel.close()


class Demo:
    """Sends the sample work and follows it until it settles."""

    def __init__(self, settings: Settings, topology: Topology, out: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.topology = topology
        self.out = out
        self.sent: dict[str, Sample] = {}
        self.progress = Progress()
        self.store = open_store(settings.state_url) if settings.idempotency else None
        #: DLQ depths at the last browse: a DLQ is read again only when it changed.
        self._dlq_depths: dict[str, int] = {}
        #: Polls in a row that found every work and delay queue empty.
        self._quiet_polls = 0

    def send(self, samples: list[Sample]) -> None:
        """Publish each sample with a confirm (the platform task's ``apply_async``)."""
        for sample in samples:
            task = app.tasks[sample.task]
            result = task.apply_async(args=sample.args, kwargs=dict(sample.kwargs), queue=sample.queue)
            self.sent[result.id] = sample

    def publish_event(self, run: str) -> str | None:
        """Publish one ``order.created`` event; each subscribing service handles it.

        Returns:
            The event id, or None when no service subscribes (no subscriptions file).
        """
        subscriptions = platform_config(app).subscriptions
        if not subscriptions:
            return None
        order = {"order_id": f"order-{run}-3", "amount": 42.0, "customer_email": "lin@example.com"}
        event_id = publish_event("order.created", order, app=app)
        for subscription in subscriptions:
            task_name = subscription.handler_for("order.created") or "?"
            self.sent[handler_task_id(subscription.service, event_id)] = Sample(
                subscription.queue,
                task_name,
                (),
                {"event": f"order.created {event_id[:8]}"},
                "completed",
                f"fan-out: the {subscription.service} service's own copy of the event",
            )
        return event_id

    def poll(self, connection: Connection) -> None:
        """Update :attr:`progress` from the idempotency store and the DLQs."""
        queues = sorted({sample.queue for sample in self.sent.values()})
        for queue in queues:
            dlq = dead_letter_queue(queue)
            depth = ready_messages(connection, dlq) or 0
            if depth == self._dlq_depths.get(dlq, 0):
                continue
            self._dlq_depths[dlq] = depth
            older = 0
            for letter in browse_dead_letters(connection, dlq):
                if letter.task_id in self.sent:
                    self.progress.dead[letter.task_id] = letter
                else:
                    older += 1
            self.progress.older_dead[dlq] = older
        if self.store is not None:
            for task_id in self.sent:
                if task_id not in self.progress.completed and self.store.is_completed(task_id):
                    self.progress.completed.add(task_id)
            return
        # No completion records: infer them from queues that stay empty.
        names = [name for queue in queues for name in (queue, *self.topology[queue].retry_queues)]
        if all(not ready_messages(connection, name) for name in names):
            self._quiet_polls += 1
        else:
            self._quiet_polls = 0
        if self._quiet_polls >= 4:
            self.progress.completed.update(t for t in self.sent if t not in self.progress.dead)

    def wait(self, connection: Connection, timeout: float) -> float | None:
        """Poll until every sent task settled; the seconds it took, or None at the deadline."""
        started = time.monotonic()
        deadline = started + timeout
        interval = 0.25
        while True:
            self.poll(connection)
            if self.progress.settled(self.sent):
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                return None
            time.sleep(interval)
            interval = min(interval * 1.5, 2.0)

    def surprises(self) -> list[str]:
        """Tasks whose outcome is not the one the demo expects."""
        problems = []
        for task_id, sample in self.sent.items():
            if task_id in self.progress.completed:
                outcome = "completed"
            elif task_id in self.progress.dead:
                outcome = self.progress.dead[task_id].error_class
            else:
                outcome = "still pending"
            if outcome != sample.expect:
                problems.append(f"{sample.queue}: {sample.call} ended {outcome}, expected {sample.expect}")
        return problems


def flower_url(settings: Settings) -> str:
    """Where a browser on this machine reaches Flower."""
    host = settings.flower_address
    if host in {"", "0.0.0.0", "::"}:
        host = "127.0.0.1" if host != "::" else "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.flower_port}"


def management_ui(management_url: str) -> str:
    """The management web UI for an API URL, without credentials."""
    parts = urllib.parse.urlsplit(management_url)
    netloc = parts.netloc.rpartition("@")[2]
    path = parts.path.rstrip("/").removesuffix("/api")
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))


def run(timeout: float, out: Callable[[str], None] = print) -> int:
    """Run the demo; returns the exit code (0 as expected, 1 otherwise)."""
    settings: Settings = platform_config(app).settings
    topology: Topology = platform_config(app).topology
    samples = [s for s in sample_work(uuid.uuid4().hex[:4]) if s.queue in settings.queues]
    skipped = {s.queue for s in sample_work("x")} - set(settings.queues)

    with Connection(settings.broker_url, connect_timeout=5) as connection:
        try:
            connection.ensure_connection(max_retries=1)
        except Exception as exc:  # noqa: BLE001 - any failure: tell the user where to look
            out(f"Cannot reach RabbitMQ at {connection.as_uri()}: {exc}")
            out("Start it with: make broker")
            return 1
        out(f"Platform demo on {connection.as_uri()}")
        declare_topology(connection, topology)
        idle = [q for q in sorted({s.queue for s in samples}) if consumers(connection, q) == 0]
        if idle:
            out(f"\nNo worker consumes {', '.join(idle)}, so nothing was sent.")
            out("Start the workers with 'make up' (or 'make worker' in another terminal), then try again.")
            return 1

        demo = Demo(settings, topology, out)
        demo.send(samples)
        out(f"\nSent {len(samples)} tasks:")
        for sample in samples:
            out(f"  {sample.queue:<10} {sample.call:<52} {sample.story}")
        if skipped:
            out(f"  (not sent: {', '.join(sorted(skipped))} is not in PLATFORM_QUEUES)")

        event_id = demo.publish_event(uuid.uuid4().hex[:4])
        if event_id:
            subscribers = [s.queue for s in platform_config(app).subscriptions]
            out(f"\nPublished 1 event: order.created {event_id} to {settings.events_exchange}")
            out(f"  delivered to {len(subscribers)} subscriber queues: {', '.join(subscribers)}")
            out("  (the publisher knows only the exchange; each service handles its own copy)")

        out(f"\nWaiting for the work to settle (at most {timeout:g}s)...")
        took = demo.wait(connection, timeout)
    report(demo, settings, took, timeout, out)
    if took is None:
        return 1
    return 1 if demo.surprises() else 0


def report(
    demo: Demo, settings: Settings, took: float | None, timeout: float, out: Callable[[str], None]
) -> None:
    """Print the summary for a reader new to the platform."""
    progress = demo.progress
    if took is None:
        out(f"Not settled after {timeout:g}s. Are the workers running? (make up; make logs)")
    else:
        out(f"Settled in {took:.1f}s.")

    completed = [demo.sent[t] for t in demo.sent if t in progress.completed]
    out(f"\nCompleted: {len(completed)} of {len(demo.sent)}")
    by_queue: dict[str, int] = {}
    for sample in completed:
        by_queue[sample.queue] = by_queue.get(sample.queue, 0) + 1
    for queue, count in by_queue.items():
        out(f"  {queue:<17} {count} completed")

    out(f"\nDead-lettered: {len(progress.dead)} (each message keeps its body and gains x- headers)")
    for letter in sorted(progress.dead.values(), key=lambda item: item.queue):
        out(f"  {letter.queue:<14} {letter.task_name}  x-error-class={letter.error_class}")
        out(f"  {'':<14} {letter.error_type}: {letter.error_message}")
        out(f"  {'':<14} x-retry-count={letter.retries}  x-task-id={letter.task_id}")
    older = {queue: count for queue, count in progress.older_dead.items() if count}
    if older:
        listed = ", ".join(f"{queue} {count}" for queue, count in sorted(older.items()))
        out(f"  (also in the DLQs from earlier runs: {listed})")

    pending = [demo.sent[t] for t in demo.sent if t not in progress.completed and t not in progress.dead]
    if pending:
        out(f"\nStill pending: {len(pending)}")
        for sample in pending:
            out(f"  {sample.queue:<10} {sample.call}")
    problems = demo.surprises() if took is not None else []
    if problems:
        out("\nNot as expected:")
        for problem in problems:
            out(f"  {problem}")

    url = flower_url(settings)
    out("\nLook around:")
    out(f"  Flower tasks    {url}/tasks     every task, with retries and failures")
    out(f"  Flower workers  {url}/workers   one worker per queue (make up)")
    out(f"  Flower broker   {url}/broker    every queue: work, delay and dead-letter")
    out(f"  Dead letters    {url}/dlq       error groups, tracebacks, replay (or: make dlq-list)")
    out(f"  RabbitMQ        {management_ui(settings.management_url)}/#/queues")
    if settings.flower_basic_auth:
        out("  (Flower asks for the user and password of FLOWER_BASIC_AUTH)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the work to settle"
    )
    args = parser.parse_args(argv)
    try:
        return run(args.timeout)
    except BrokenPipeError:  # the reader went away (``| head``): not a broker problem
        return 1
    except OSError as exc:
        print(f"demo: lost the broker: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
