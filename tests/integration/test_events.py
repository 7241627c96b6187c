"""Events end to end: fan-out to per-service queues, competing workers, adding a
subscriber by configuration, isolation of slow subscribers, schemas, claim-check.

Real RabbitMQ (a fresh vhost per test) and real ``celery worker`` processes.
Handlers (tests/support/event_handlers.py) write a ledger line per event handled;
events are published by the public API (:mod:`tasks.events`) or, to show a
producer in another language, as raw CloudEvents with a plain AMQP client.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from config.app import platform_config
from tests.support.ledger import events as ledger_events
from tests.support.messages import header
from tests.support.wait import wait_for

pytestmark = pytest.mark.broker

SERVICES = ("email", "analytics", "inventory")


def write_subscriptions(path: Path, services: dict[str, str], **limits: dict[str, object]) -> Path:
    """A subscriptions file: each service handles order.created with ``tests.events.<handler>``."""
    lines = []
    for service, handler in services.items():
        lines.append(f"[services.{service}]")
        lines.append(
            f'events = {{ "order.created" = "tests.events.{handler}", "document.uploaded" = "tests.events.large" }}'
        )
        lines.append('modules = ["tests.support.event_handlers"]')
        for key, value in limits.get(service, {}).items():
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def subscriptions(tmp_path: Path, platform_env: dict[str, str]) -> dict[str, str]:
    """The three seed subscribers of order.created, in the test workers' environment."""
    file = write_subscriptions(tmp_path / "subscriptions.toml", {s: s for s in SERVICES})
    platform_env["PLATFORM_SUBSCRIPTIONS_FILE"] = str(file)
    return platform_env


@pytest.fixture
def events_client(subscriptions: dict[str, str]):
    """A publishing app on this test's vhost, with the subscriptions configured."""
    import tests.support.event_handlers  # noqa: F401 - registers the test-only schemas
    from config.app import create_app
    from config.settings import load_settings

    app = create_app(load_settings(subscriptions), main="test-events-client")
    yield app
    app.close()


def handled(ledger: Path) -> list[tuple[str, str, str]]:
    """``(service, event id, worker)`` for every ledger line a handler wrote."""
    rows = []
    for entry in ledger_events(ledger, "handled"):
        service, event_id = entry.task_id.split(":", 1)
        rows.append((service, event_id, entry.extra.split(" ")[1]))
    return rows


def order(n: int) -> dict[str, object]:
    return {"order_id": f"o-{n}", "amount": 10.0 + n, "customer_email": f"c{n}@example.com"}


def test_one_publish_reaches_three_subscribers_exactly_once_each(
    vhost, events_client, start_worker, tmp_path: Path
):
    """Given email, analytics and inventory subscribed to order.created, when the
    order service publishes 20 events, each service handles each event once."""
    from tasks.events import publish

    ledger = tmp_path / "ledger.txt"
    worker = start_worker(queues="email.events,analytics.events,inventory.events", concurrency=2)
    ids = [publish("order.created", order(n), app=events_client) for n in range(20)]
    wait_for(lambda: len(handled(ledger)) >= 60, message=lambda: f"60 handled, got {len(handled(ledger))}")
    # A warm shutdown finishes and acks what is in flight: with the queues empty
    # afterwards, no duplicate can still be on its way.
    worker.stop()
    counts = Counter((service, event_id) for service, event_id, _ in handled(ledger))
    assert counts == Counter({(s, i): 1 for s in SERVICES for i in ids})
    for service in SERVICES:
        assert vhost.depth(f"{service}.events") == 0
        assert vhost.depth(f"{service}.events.dlq") == 0


def test_two_workers_on_one_subscriber_queue_each_handle_an_event_once(
    vhost, events_client, start_worker, tmp_path: Path
):
    """Two email workers compete on email.events: every event is handled by
    exactly one of them, and both take part."""
    from tasks.events import publish_many

    ledger = tmp_path / "ledger.txt"
    first = start_worker(queues="email.events", concurrency=1)
    second = start_worker(queues="email.events", concurrency=1)
    ids = publish_many([("order.created", order(n)) for n in range(40)], app=events_client)
    email = lambda: [row for row in handled(ledger) if row[0] == "email"]  # noqa: E731
    wait_for(lambda: len(email()) >= 40, message=lambda: f"40 handled by email, got {len(email())}")
    first.stop()
    second.stop()
    assert vhost.depth("email.events") == 0
    rows = email()
    assert sorted(event_id for _, event_id, _ in rows) == sorted(ids)
    workers = Counter(worker for _, _, worker in rows)
    assert {w.split("@")[0] for w in workers} == {first.name, second.name}


def test_a_subscriber_is_added_by_configuration_only(
    vhost, subscriptions, events_client, start_worker, tmp_path: Path
):
    """The order service keeps publishing with the same app and code; an operator
    adds fraud to the subscriptions file and starts its worker: fraud gets every
    event published from then on, and email still gets all of them."""
    from tasks.events import publish

    ledger = tmp_path / "ledger.txt"
    start_worker(queues="email.events", concurrency=1)
    before = [publish("order.created", order(n), app=events_client) for n in range(5)]
    file = write_subscriptions(
        tmp_path / "subscriptions-with-fraud.toml", {**{s: s for s in SERVICES}, "fraud": "fraud"}
    )
    start_worker(queues="fraud.events", concurrency=1, PLATFORM_SUBSCRIPTIONS_FILE=str(file))
    after = [publish("order.created", order(n), app=events_client) for n in range(5, 10)]
    by = lambda service: sorted(i for s, i, _ in handled(ledger) if s == service)  # noqa: E731
    wait_for(lambda: len(by("email")) == 10 and len(by("fraud")) == 5, message=lambda: f"{handled(ledger)}")
    assert by("fraud") == sorted(after)
    assert by("email") == sorted(before + after)
    assert vhost.depth("fraud.events.dlq") == 0


def test_a_slow_or_stopped_subscriber_does_not_slow_the_others(
    vhost, tmp_path: Path, platform_env: dict[str, str], start_worker
):
    """analytics handles an event per second and inventory has no worker at all;
    email still handles 30 events as fast as alone, while inventory's queue holds
    all 30 and analytics is far behind."""
    from config.app import create_app
    from config.settings import load_settings
    from tasks.events import publish_many

    file = write_subscriptions(
        tmp_path / "subscriptions.toml", {"email": "email", "analytics": "slow", "inventory": "inventory"}
    )
    env = {**platform_env, "PLATFORM_SUBSCRIPTIONS_FILE": str(file)}
    app = create_app(load_settings(env), main="test-events-slow")
    ledger = tmp_path / "ledger.txt"
    try:
        start_worker(queues="email.events", concurrency=1, PLATFORM_SUBSCRIPTIONS_FILE=str(file))
        start_worker(queues="analytics.events", concurrency=1, PLATFORM_SUBSCRIPTIONS_FILE=str(file))
        started = time.monotonic()
        publish_many([("order.created", order(n)) for n in range(30)], app=app)
        email = lambda: [r for r in handled(ledger) if r[0] == "email"]  # noqa: E731
        wait_for(lambda: len(email()) == 30, timeout=15, message=lambda: f"email: {len(email())} of 30")
        elapsed = time.monotonic() - started
        slow_done = len([r for r in handled(ledger) if r[0] == "slow"])
        assert elapsed < 10, f"email took {elapsed:.1f}s for 30 events"
        assert slow_done < 15
        assert vhost.depth("inventory.events") == 30
    finally:
        app.close()


def test_a_cloud_event_from_another_language_is_handled_and_retried_through_its_ladder(
    vhost, tmp_path: Path, platform_env: dict[str, str], start_worker
):
    """A producer with a plain AMQP client publishes a binary-mode CloudEvent to
    the events exchange; the subscriber's flaky handler times out once, the event
    waits in flaky.events.retry.1 and is handled on the second attempt."""
    file = write_subscriptions(tmp_path / "subscriptions.toml", {"flaky": "flaky"})
    ledger = tmp_path / "ledger.txt"
    start_worker(queues="flaky.events", concurrency=1, PLATFORM_SUBSCRIPTIONS_FILE=str(file))
    event_id = str(uuid.uuid4())
    body = json.dumps({"order_id": "o-go", "amount": 5}).encode()
    vhost.publish(
        "order.created",
        body,
        exchange="platform.events",
        headers={
            "cloudEvents_specversion": "1.0",
            "cloudEvents_id": event_id,
            "cloudEvents_source": "/go/checkout",
            "cloudEvents_type": "order.created",
        },
    )
    wait_for(lambda: handled(ledger), message="the event to be handled")
    [(service, handled_id, _)] = handled(ledger)
    assert (service, handled_id) == ("flaky", event_id)
    assert [e.extra for e in ledger_events(ledger, "attempt")] == ["0", "1"]
    assert vhost.depth("flaky.events.dlq") == 0


def raw_cloud_event(vhost, event_type: str, data: bytes, event_id: str | None = None) -> str:
    """Publish a binary-mode CloudEvent with a plain AMQP client, as a foreign producer would."""
    event_id = event_id or str(uuid.uuid4())
    vhost.publish(
        event_type,
        data,
        exchange="platform.events",
        headers={
            "cloudEvents_specversion": "1.0",
            "cloudEvents_id": event_id,
            "cloudEvents_source": "/elsewhere",
            "cloudEvents_type": event_type,
        },
    )
    return event_id


def test_an_invalid_event_is_dead_lettered_at_once_with_its_schema_version(
    vhost, subscriptions, start_worker, tmp_path: Path
):
    """An order.created whose amount is negative fails validation: email.events.dlq
    holds it after one attempt, body byte for byte, CloudEvents headers kept, and
    the schema version and the reason in its headers."""
    ledger = tmp_path / "ledger.txt"
    start_worker(queues="email.events", concurrency=1)
    body = b'{"order_id": "o-bad", "amount": -5}'
    event_id = raw_cloud_event(vhost, "order.created", body)
    wait_for(lambda: vhost.depth("email.events.dlq") == 1, message="the dead letter")
    [dead] = vhost.take_all("email.events.dlq")
    assert dead.body == body
    assert header(dead, "x-error-class") == "permanent"
    assert header(dead, "x-error-type") == "tasks.events.handlers.EventSchemaError"
    assert "amount: Input should be greater than 0" in header(dead, "x-error-message")
    assert header(dead, "x-event-schema-version") == 1
    assert header(dead, "x-event-type") == "order.created"
    assert header(dead, "x-task-id") == f"email:{event_id}"
    assert header(dead, "x-original-queue") == "email.events"
    assert header(dead, "x-retry-count") == 0
    assert header(dead, "cloudEvents_id") == event_id
    assert handled(ledger) == []
    assert vhost.depth("email.events") == 0


def test_a_5_mb_payload_round_trips_with_claim_check_and_is_refused_without(
    vhost, tmp_path: Path, platform_env: dict[str, str], start_worker
):
    """Without claim-check, publishing 5 MB raises EventTooLarge and sends nothing;
    with it, the message carries only a reference (the CloudEvents extension
    ``claimcheck``), the handler gets all 5 MB, and the blob stays in the store
    after one subscriber handled it (another still points to it)."""
    import tests.support.event_handlers  # noqa: F401 - registers document.uploaded
    from config.app import create_app
    from config.settings import load_settings
    from tasks.events import EventTooLarge, publish

    file = write_subscriptions(tmp_path / "subscriptions.toml", {"email": "email", "analytics": "analytics"})
    blobs = tmp_path / "blobs"
    env = {**platform_env, "PLATFORM_SUBSCRIPTIONS_FILE": str(file), "PLATFORM_BLOB_DIR": str(blobs)}
    note = "x" * (5 * 1024 * 1024)
    refusing = create_app(load_settings(env), main="test-events-no-claim-check")
    claiming = create_app(
        load_settings({**env, "PLATFORM_CLAIM_CHECK": "true"}), main="test-events-claim-check"
    )
    ledger = tmp_path / "ledger.txt"
    try:
        start_worker(queues="email.events", concurrency=1, **env)
        with pytest.raises(EventTooLarge, match="over the limit of 1048576 bytes"):
            publish("document.uploaded", {"name": "big", "note": note}, app=refusing)
        assert vhost.depth("email.events") == 0
        event_id = publish("document.uploaded", {"name": "big", "note": note}, app=claiming)
        wait_for(lambda: ledger_events(ledger, "handled"), message="the large event to be handled")
        [entry] = ledger_events(ledger, "handled")
        assert entry.task_id == f"email:{event_id}"
        assert entry.extra == f"large {len(note)}"
        assert [path.name for path in blobs.iterdir()] == [f"{event_id}.blob"]
        [waiting] = vhost.take_all("analytics.events")  # analytics has no worker: look at the wire
        assert len(waiting.body) < 200
        assert header(waiting, "cloudEvents_claimcheck") == f"{event_id}.blob"
    finally:
        refusing.close()
        claiming.close()


def test_a_subscriber_queue_at_its_length_limit_refuses_or_dead_letters_as_configured(
    vhost, tmp_path: Path, platform_env: dict[str, str], start_worker
):
    """email (limit 3, reject-publish) and analytics (limit 3, dead-letter) have no
    worker. Three events fit; once email is full the next publish is nacked, so
    the publisher gets a PublishError, while analytics dropped its oldest events to
    analytics.events.dlq (the refused event reached analytics too)."""
    from config.app import create_app
    from config.settings import load_settings
    from tasks.events import publish
    from workers.errors import PublishError

    file = write_subscriptions(
        tmp_path / "subscriptions.toml",
        {"email": "email", "analytics": "analytics"},
        email={"max_length": 3, "overflow": "reject-publish"},
        analytics={"max_length": 3, "overflow": "dead-letter"},
    )
    env = {**platform_env, "PLATFORM_SUBSCRIPTIONS_FILE": str(file)}
    app = create_app(load_settings(env), main="test-events-bounded")
    try:
        from workers.broker import declare_topology

        with app.connection_for_write() as connection:
            declare_topology(connection, platform_config(app).topology)
        ids = [publish("order.created", order(n), app=app) for n in range(3)]
        # A quorum queue refuses once it holds more than its limit, so it may
        # take one more (RabbitMQ 3.10); the publish after that is refused.
        refused = None
        for n in range(3, 6):
            try:
                ids.append(publish("order.created", order(n), app=app))
            except PublishError as exc:
                refused = exc
                break
        assert refused is not None and "a subscriber queue is full" in str(refused)
        assert len(ids) in (3, 4)
        assert vhost.depth("email.events") == len(ids)
        kept = vhost.depth("analytics.events")
        dropped = vhost.take_all("analytics.events.dlq")
        assert kept in (3, 4)
        assert [header(m, "cloudEvents_id") for m in dropped] == ids[: len(ids) + 1 - kept]
        assert {header(m, "x-death")[0]["reason"] for m in dropped} == {"maxlen"}
    finally:
        app.close()


def test_backfill_of_100_past_events_while_20_new_arrive_handles_all_120_once(
    vhost, subscriptions, events_client, start_worker, tmp_path: Path
):
    """100 order.created events are in the event log before fraud subscribes.
    Fraud is added by configuration, its worker starts, and `pubsub backfill fraud
    --from-start` runs while 20 more events are published: fraud handles all 120,
    each exactly once (events that came both ways were absorbed by idempotency)."""
    import subprocess
    import sys

    from tasks.events import publish, publish_many
    from tests.support.worker import ROOT

    ledger = tmp_path / "ledger.txt"
    past = publish_many([("order.created", order(n)) for n in range(100)], app=events_client)
    file = write_subscriptions(tmp_path / "with-fraud.toml", {**{s: s for s in SERVICES}, "fraud": "fraud"})
    env = {**subscriptions, "PLATFORM_SUBSCRIPTIONS_FILE": str(file)}
    # One process: a live copy and a backfilled copy of one event never run at
    # the same moment (the idempotency check is not a lock).
    worker = start_worker(queues="fraud.events", concurrency=1, PLATFORM_SUBSCRIPTIONS_FILE=str(file))
    backfill = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "pubsub", "backfill", "fraud", "--from-start"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    fraud = lambda: [i for s, i, _ in handled(ledger) if s == "fraud"]  # noqa: E731
    # Half the live events before fraud has handled anything, half after: live
    # and backfilled copies arrive interleaved.
    new = [publish("order.created", order(n), app=events_client) for n in range(100, 110)]
    wait_for(lambda: fraud(), timeout=60, message="fraud to handle its first event")
    new += [publish("order.created", order(n), app=events_client) for n in range(110, 120)]
    out, err = backfill.communicate(timeout=120)
    assert backfill.returncode == 0, err
    assert "backfilled" in out
    wait_for(
        lambda: len(set(fraud())) >= 120, timeout=60, message=lambda: f"fraud: {len(set(fraud()))} of 120"
    )
    wait_for(lambda: vhost.depth("fraud.events") == 0, message="fraud.events to drain")
    worker.stop()
    assert vhost.depth("fraud.events") == 0
    counts = Counter(fraud())
    assert set(counts) == set(past + new)
    assert max(counts.values()) == 1, [i for i, c in counts.items() if c > 1]
    assert vhost.depth("fraud.events.dlq") == 0


def test_the_per_event_view_shows_processed_retrying_dead_lettered_and_pending(
    vhost, tmp_path: Path, platform_env: dict[str, str], start_worker
):
    """Three subscribers of order.created: email handles a good event and
    dead-letters an invalid one, stuck keeps timing out (its retry waits in
    stuck.events.retry.1), analytics has no worker. `pubsub show` tells them apart
    and leaves every browsed message where it was."""
    import subprocess
    import sys

    from tests.support.worker import ROOT

    file = write_subscriptions(
        tmp_path / "subscriptions.toml", {"email": "email", "stuck": "stuck", "analytics": "analytics"}
    )
    env = {**platform_env, "PLATFORM_SUBSCRIPTIONS_FILE": str(file)}
    ledger = tmp_path / "ledger.txt"
    start_worker(queues="email.events", concurrency=1, **env)
    start_worker(queues="stuck.events", concurrency=1, **env)
    event_id = raw_cloud_event(vhost, "order.created", b'{"order_id": "o-1", "amount": 3}')
    bad_id = raw_cloud_event(vhost, "order.created", b'{"order_id": "o-2", "amount": -3}')
    wait_for(lambda: vhost.depth("stuck.events.retry.1") == 1, message="stuck retry to wait")
    wait_for(lambda: vhost.depth("email.events.dlq") == 1, message="the invalid event's dead letter")
    wait_for(lambda: ledger_events(ledger, "handled"), message="email to handle the good event")

    def show(identifier: str) -> dict[str, dict[str, str]]:
        done = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "config", "pubsub", "show", identifier, "--json"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return {row["service"]: row for row in json.loads(done.stdout)}

    good = show(event_id)
    assert {service: row["state"] for service, row in good.items()} == {
        "email": "processed",
        "stuck": "retrying",
        "analytics": "pending",
    }
    assert good["stuck"]["detail"].startswith(
        "in stuck.events.retry.1, retry 1, last error workers.errors.TransientError: upstream is down"
    )
    bad = show(bad_id)
    assert bad["email"]["state"] == "dead-lettered"
    assert "EventSchemaError" in bad["email"]["detail"]
    assert vhost.depth("email.events.dlq") == 1  # browsing left it there
    assert vhost.depth("stuck.events.retry.1") == 1
