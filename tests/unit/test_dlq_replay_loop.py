"""The replay loop against a fake broker: confirm before ack, order kept, the stops, the pacing.

The fake keeps only what the loop relies on: ``basic_get`` takes the head,
``basic_ack`` removes a message for good, closing a channel puts its unacked
messages back at the head in their order (as RabbitMQ does for a classic
queue), a passive declare of a missing queue raises ``NotFound``, and a
publish can be refused or its copy dead-lettered again (into every watch
queue). DLX and TTL themselves are tested on RabbitMQ (tests/integration).
"""

from __future__ import annotations

import itertools
from typing import Any

import amqp
import pytest
from amqp.exceptions import MessageNacked, NotFound

from workers.ops.dlq.browsing import UnknownQueue
from workers.ops.dlq.filters import Filter
from workers.ops.dlq.replaying import replay


def dead_letter(task_id: str, error_class: str = "transient", **headers: Any) -> amqp.Message:
    return amqp.Message(
        b'{"n": 1}',
        correlation_id=task_id,
        application_headers={
            "id": task_id,
            "x-task-id": task_id,
            "x-task-name": "t.a",
            "x-error-class": error_class,
            "x-error-type": "TimeoutError",
            "x-retry-count": 3,
            **headers,
        },
    )


class FakeBroker:
    """Queues of messages, and a log of what was published and acked, in order."""

    def __init__(self, **queues: list[amqp.Message]) -> None:
        self.queues: dict[str, list[amqp.Message]] = {
            name.replace("_", "."): list(q) for name, q in queues.items()
        }
        self.log: list[tuple[str, str]] = []
        #: Queues whose publishes the broker nacks.
        self.refusing: set[str] = set()
        #: Whether every replayed copy is dead-lettered again at once.
        self.refailing = False
        self.watches: list[str] = []
        self.tags = itertools.count(1)
        self.open_channels = 0

    def ensure_connection(self, max_retries: int | None = None) -> None:
        pass

    def channel(self) -> FakeChannel:
        self.open_channels += 1
        return FakeChannel(self)

    def ids(self, queue: str) -> list[str]:
        return [m.properties["application_headers"]["id"] for m in self.queues[queue]]


class FakeChannel:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.unacked: dict[int, tuple[str, amqp.Message]] = {}
        self.confirming = False
        self.closed = False

    def queue_declare(self, queue: str = "", passive: bool = False, **options: Any) -> tuple[str, int, int]:
        if passive:
            if queue not in self.broker.queues:
                self.close()
                raise NotFound(f"NOT_FOUND - no queue '{queue}'")
            return queue, len(self.broker.queues[queue]), 0
        name = f"amq.gen-{len(self.broker.watches)}"
        self.broker.queues[name] = []
        self.broker.watches.append(name)
        return name, 0, 0

    def queue_bind(self, queue: str, exchange: str, routing_key: str) -> None:
        pass

    def confirm_select(self) -> None:
        self.confirming = True

    def basic_get(self, queue: str, no_ack: bool = False) -> amqp.Message | None:
        if not self.broker.queues[queue]:
            return None
        message = self.broker.queues[queue].pop(0)
        if not no_ack:
            tag = next(self.broker.tags)
            message.delivery_info = {"delivery_tag": tag}
            self.unacked[tag] = (queue, message)
        return message

    def basic_ack(self, delivery_tag: int) -> None:
        _, message = self.unacked.pop(delivery_tag)
        self.broker.log.append(("ack", message.properties["application_headers"]["id"]))

    def basic_publish_confirm(
        self, message: amqp.Message, exchange: str, routing_key: str, **kw: Any
    ) -> None:
        assert self.confirming and exchange == "" and kw["mandatory"]
        if routing_key in self.broker.refusing:
            raise MessageNacked("the broker nacked it")
        task_id = message.properties["application_headers"]["id"]
        self.broker.queues[routing_key].append(message)
        self.broker.log.append(("publish", task_id))
        if self.broker.refailing:
            for watch in self.broker.watches:
                self.broker.queues[watch].append(message)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.broker.open_channels -= 1
        for queue, message in sorted(self.unacked.values(), key=lambda item: -item[1].delivery_tag):
            self.broker.queues[queue].insert(0, message)
        self.unacked.clear()


def broker_with(letters: list[amqp.Message], **queues: list[amqp.Message]) -> FakeBroker:
    return FakeBroker(orders=[], orders_dlq=letters, **queues)


def test_matching_letters_are_published_confirmed_then_acked_and_the_rest_keep_their_order():
    """Given transient and permanent letters interleaved, when the transient ones
    are replayed, then each is published (with a confirm) before it is acked,
    the permanent ones stay in the DLQ in their order, and no channel is left open."""
    kinds = ["transient", "permanent", "transient", "permanent", "transient"]
    broker = broker_with([dead_letter(f"id-{n}", kind) for n, kind in enumerate(kinds)])
    result = replay(broker, "orders", Filter(error_classes=("transient",)))
    assert (result.total, result.scanned, result.matched, result.replayed, result.stopped) == (
        5,
        5,
        3,
        3,
        None,
    )
    assert broker.log == [("publish", "id-0"), ("ack", "id-0"), ("publish", "id-2"), ("ack", "id-2")] + [
        ("publish", "id-4"),
        ("ack", "id-4"),
    ]
    assert broker.ids("orders") == ["id-0", "id-2", "id-4"]
    assert broker.ids("orders.dlq") == ["id-1", "id-3"]
    assert all(m.properties["application_headers"]["x-replay-count"] == 1 for m in broker.queues["orders"])
    assert broker.open_channels == 0


def test_a_dry_run_counts_the_matches_and_moves_nothing():
    """Given three letters, when a dry run replays all, then all three are counted, none moves."""
    broker = broker_with([dead_letter(f"id-{n}") for n in range(3)])
    result = replay(broker, "orders", dry_run=True)
    assert (result.matched, result.replayed, result.task_ids) == (3, 0, ["id-0", "id-1", "id-2"])
    assert broker.log == [] and broker.ids("orders.dlq") == ["id-0", "id-1", "id-2"]
    assert broker.watches == [], "a dry run opens no watch queue"


def test_a_refused_publish_stops_the_replay_and_leaves_that_letter_first_in_the_dlq():
    """Given a work queue whose publishes the broker refuses, when replaying, then
    the replay stops at the first letter with "publish-failed" and the error,
    and every letter is still in the DLQ, in order."""
    broker = broker_with([dead_letter(f"id-{n}") for n in range(3)])
    broker.refusing.add("orders")
    result = replay(broker, "orders")
    assert (result.stopped, result.scanned, result.matched, result.replayed) == ("publish-failed", 1, 1, 0)
    assert result.error.startswith("MessageNacked")
    assert broker.ids("orders.dlq") == ["id-0", "id-1", "id-2"]


def test_a_replay_stops_on_refailures_at_the_first_watch_reading_that_exceeds_the_ratio():
    """Given 25 letters whose copies all dead-letter again, when replaying with a
    ratio of 0.5, then the watch read after 10 letters sees 10 re-failures and
    the replay stops there; the 15 others stay in the DLQ."""
    broker = broker_with([dead_letter(f"id-{n}") for n in range(25)])
    broker.refailing = True
    result = replay(broker, "orders", max_refail_ratio=0.5)
    assert (result.stopped, result.scanned, result.replayed, result.refailed) == ("refailures", 10, 10, 10)
    assert broker.ids("orders.dlq") == [f"id-{n}" for n in range(10, 25)]


def test_re_failures_below_the_ratio_are_counted_to_the_end_without_a_stop():
    """Given 3 letters whose copies dead-letter again, when replaying with a ratio
    of 0.5 (judged on at least 10), then all 3 are replayed and counted as re-failed."""
    broker = broker_with([dead_letter(f"id-{n}") for n in range(3)])
    broker.refailing = True
    result = replay(broker, "orders", max_refail_ratio=0.5)
    assert (result.stopped, result.replayed, result.refailed) == (None, 3, 3)


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"orders": []}, "dead-letter queue 'orders.dlq' does not exist"),
        (
            {"orders_dlq": [dead_letter("id-0")]},
            "the original queue 'orders' does not exist; declare the topology first",
        ),
    ],
    ids=["no DLQ", "no original queue"],
)
def test_a_missing_dlq_or_original_queue_raises_unknown_queue(
    queues: dict[str, list[amqp.Message]], message: str
):
    """Given a broker without the DLQ (or without the queue a letter goes back to),
    when replaying, then UnknownQueue says which, the letters stay, and no channel stays open."""
    broker = FakeBroker(**queues)
    with pytest.raises(UnknownQueue, match=message):
        replay(broker, "orders")
    assert broker.open_channels == 0
    assert broker.queues.get("orders.dlq", []) == queues.get("orders_dlq", [])


def test_a_paced_replay_sleeps_until_each_publish_is_due_and_reports_progress_per_letter():
    """Given 4 letters at --rate 2 and a clock that only sleeps move, when replaying,
    then it sleeps 0.5 s before each publish after the first, and progress is
    reported after every letter."""
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    seen: list[tuple[int, int]] = []
    broker = broker_with([dead_letter(f"id-{n}") for n in range(4)])
    result = replay(
        broker,
        "orders",
        rate=2,
        clock=lambda: now[0],
        sleep=sleep,
        progress=lambda state: seen.append((state.scanned, state.replayed)),
    )
    assert sleeps == [0.5, 0.5, 0.5]
    assert result.elapsed == pytest.approx(1.5)
    assert seen == [(1, 1), (2, 2), (3, 3), (4, 4)]
