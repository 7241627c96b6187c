"""Following the demo's work: send it, publish the event, poll until it has settled.

A task is settled once it completed or was dead-lettered:

- completions come from the idempotency store the workers write
  (``PLATFORM_STATE_URL``);
- dead letters from browsing ``<queue>.dlq`` with :func:`workers.ops.dlq.browse`,
  which consumes nothing; a DLQ is browsed again only when its depth changed;
- with ``PLATFORM_IDEMPOTENCY=false`` nothing records completions, so a task
  not dead-lettered counts as completed once its work and delay queues have
  stayed empty for :data:`QUIET_POLLS` polls in a row.

The bookkeeping (:class:`Progress`, :func:`surprises`) is pure; the broker is
touched only by :class:`Follower` and :func:`idle_queues`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from config import app
from config.topology import dead_letter_queue
from tasks import analytics, email, inventory, orders, payments  # noqa: F401 - registers the tasks
from tasks.demo.samples import COMPLETED, Sample
from tasks.events import publish as publish_event
from workers.broker import queue_depth
from workers.delivery.idempotency import open_store
from workers.events.receive import handler_task_id
from workers.ops.dlq import DeadLetterMessage, UnknownQueue, browse

if TYPE_CHECKING:
    from config.settings import Settings
    from config.subscriptions import Subscription
    from config.topology import Topology
    from workers.delivery.idempotency import CompletionStore

#: Most dead letters read from one DLQ per browse.
BROWSE_LIMIT = 500
#: Polls in a row with every work and delay queue empty after which, when
#: nothing records completions, a task not dead-lettered counts as completed.
QUIET_POLLS = 4
#: The outcome of a task that neither completed nor was dead-lettered (yet).
PENDING = "still pending"
#: Seconds between the first two polls; each pause is 1.5 times the last.
FIRST_POLL_INTERVAL = 0.25
#: Longest pause between two polls, in seconds.
MAX_POLL_INTERVAL = 2.0
#: The event the demo publishes to show the fan-out to subscribers.
DEMO_EVENT = "order.created"


@dataclass
class Progress:
    """What has become of the sent tasks so far."""

    completed: set[str] = field(default_factory=set)
    #: Task id -> its dead letter, for the tasks of this run.
    dead: dict[str, DeadLetterMessage] = field(default_factory=dict)
    #: DLQ name -> dead letters in it that this run did not send.
    older_dead: dict[str, int] = field(default_factory=dict)
    #: Polls in a row that found every work and delay queue empty.
    quiet_polls: int = 0

    def settled(self, task_ids: Iterable[str]) -> bool:
        """Whether every one of ``task_ids`` completed or was dead-lettered."""
        return all(task_id in self.completed or task_id in self.dead for task_id in task_ids)

    def outcome(self, task_id: str) -> str:
        """:data:`COMPLETED`, the dead letter's ``x-error-class``, or :data:`PENDING`."""
        if task_id in self.completed:
            return COMPLETED
        if task_id in self.dead:
            return self.dead[task_id].error_class or "?"
        return PENDING

    def record_dead_letters(
        self, dlq: str, letters: Iterable[DeadLetterMessage], sent: Mapping[str, Any]
    ) -> None:
        """Note the letters of one browse of ``dlq``: this run's by task id, the others counted."""
        older = 0
        for letter in letters:
            if letter.task_id in sent:
                self.dead[letter.task_id] = letter
            else:
                older += 1
        self.older_dead[dlq] = older

    def record_queues(self, empty: bool, task_ids: Iterable[str]) -> None:
        """Note one poll of the work and delay queues, when nothing records completions.

        After :data:`QUIET_POLLS` empty polls in a row, every task of
        ``task_ids`` that was not dead-lettered counts as completed.
        """
        self.quiet_polls = self.quiet_polls + 1 if empty else 0
        if self.quiet_polls >= QUIET_POLLS:
            self.completed.update(task_id for task_id in task_ids if task_id not in self.dead)


def surprises(sent: Mapping[str, Sample], progress: Progress) -> list[str]:
    """One line for each sent task whose outcome is not the one its sample expects."""
    problems = []
    for task_id, sample in sent.items():
        outcome = progress.outcome(task_id)
        if outcome != sample.expect:
            problems.append(f"{sample.queue}: {sample.call} ended {outcome}, expected {sample.expect}")
    return problems


def idle_queues(connection: Any, queues: Iterable[str]) -> list[str]:
    """The queues of ``queues`` (sorted, once each) that no worker consumes, or that are missing."""
    idle = []
    for queue in sorted(set(queues)):
        depth = queue_depth(connection, queue)
        if depth is None or depth.consumers == 0:
            idle.append(queue)
    return idle


def event_subscribers(subscriptions: Sequence[Subscription]) -> list[Subscription]:
    """The services subscribed to the demo's event (``order.created``)."""
    return [subscription for subscription in subscriptions if subscription.handler_for(DEMO_EVENT)]


class Follower:
    """Sends the sample work and the event, and follows them until they settle."""

    def __init__(self, settings: Settings, topology: Topology) -> None:
        self.topology = topology
        #: Task id -> the sample it was sent for (event handlers included).
        self.sent: dict[str, Sample] = {}
        self.progress = Progress()
        self.store = open_store(settings.state_url) if settings.idempotency else None
        #: DLQ depths at the last browse: a DLQ is read again only when it changed.
        self._dlq_depths: dict[str, int] = {}

    def send(self, samples: Sequence[Sample]) -> None:
        """Publish each sample with a confirm (the platform task's ``apply_async``)."""
        for sample in samples:
            task = app.tasks[sample.task]
            result = task.apply_async(args=sample.args, kwargs=dict(sample.kwargs), queue=sample.queue)
            self.sent[result.id] = sample

    def publish_event(self, run: str, subscriptions: Sequence[Subscription]) -> str | None:
        # Only the services subscribed to order.created get a copy (others handle other facts).
        """Publish one ``order.created`` event; each subscribing service handles its own copy.

        Returns:
            The event id, or None when no service subscribes (no subscriptions file).
        """
        subscribers = event_subscribers(subscriptions)
        if not subscribers:
            return None
        order = {"order_id": f"order-{run}-3", "amount": 42.0, "customer_email": "lin@example.com"}
        event_id = publish_event(DEMO_EVENT, order, app=app)
        for subscription in subscribers:
            self.sent[handler_task_id(subscription.service, event_id)] = Sample(
                subscription.queue,
                subscription.handler_for(DEMO_EVENT) or "?",
                (),
                {"event": f"{DEMO_EVENT} {event_id[:8]}"},
                COMPLETED,
                f"fan-out: the {subscription.service} service's own copy of the event",
            )
        return event_id

    def surprises(self) -> list[str]:
        """Sent tasks whose outcome is not the one the demo expects."""
        return surprises(self.sent, self.progress)

    def wait(self, connection: Any, timeout: float) -> float | None:
        """Poll until every sent task settled; the seconds it took, or None at the deadline."""
        started = time.monotonic()
        deadline = started + timeout
        interval = FIRST_POLL_INTERVAL
        while True:
            self.poll(connection)
            if self.progress.settled(self.sent):
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                return None
            time.sleep(interval)
            interval = min(interval * 1.5, MAX_POLL_INTERVAL)

    def poll(self, connection: Any) -> None:
        """Update :attr:`progress` from the DLQs and the idempotency store (or the queues)."""
        queues = sorted({sample.queue for sample in self.sent.values()})
        for queue in queues:
            self._read_dead_letters(connection, queue)
        if self.store is not None:
            self._read_completions(self.store)
        else:
            self.progress.record_queues(self._all_empty(connection, queues), self.sent)

    def _read_dead_letters(self, connection: Any, queue: str) -> None:
        dlq = dead_letter_queue(queue)
        depth = queue_depth(connection, dlq)
        messages = depth.messages if depth is not None else 0
        if messages == self._dlq_depths.get(dlq, 0):
            return
        self._dlq_depths[dlq] = messages
        try:
            letters = browse(connection, queue, BROWSE_LIMIT)
        except UnknownQueue:  # deleted since its depth was read
            letters = []
        self.progress.record_dead_letters(dlq, letters, self.sent)

    def _read_completions(self, store: CompletionStore) -> None:
        for task_id in self.sent:
            if task_id not in self.progress.completed and store.is_completed(task_id):
                self.progress.completed.add(task_id)

    def _all_empty(self, connection: Any, queues: Iterable[str]) -> bool:
        """Whether every work queue of ``queues`` and its delay queues is empty (or missing)."""
        names = [name for queue in queues for name in (queue, *self.topology[queue].retry_queues)]
        for name in names:
            depth = queue_depth(connection, name)
            if depth is not None and depth.messages:
                return False
        return True
