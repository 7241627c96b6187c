"""The transactional outbox: facts and deadlines written with the state change, sent after commit.

::

    handler's transaction:  UPDATE payments ...; UPDATE saga_instances ...;
                            INSERT INTO saga_outbox (event or deadline)    -- COMMIT, all or nothing
    right after commit:     relay(those rows)  -> publish with confirms -> mark sent
    every few seconds:      relay(rows unsent for a while)   (the worker's OutboxRelay step)

A row becomes a message only after its transaction committed, so a rollback
publishes nothing; a process killed between commit and publish leaves the row
unsent, and the periodic relay of any worker publishes it later. A row is
marked sent only after the broker confirmed it, so a crash between confirm and
mark sends it twice: the same event id, absorbed by the subscribers'
idempotency (``<service>:<event id>``) and by the saga's log.

Two kinds of rows:

- ``event``: a CloudEvent (attributes and body), published to the events exchange;
- ``deadline``: a task the broker holds until a saga's deadline (sent with
  ``eta``, so :mod:`workers.delivery.publishing` puts it in the delay levels;
  no worker holds it, a restart loses none).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from workers.events.envelope import CloudEvent
from workers.events.publisher import OutgoingEvent, publish_many, publish_one
from workers.sagas.store import run_once

if TYPE_CHECKING:
    from celery import Celery

    from workers.delivery.idempotency import CompletionStore

logger = logging.getLogger(__name__)

#: The outbox table (both dialects).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS saga_outbox ("
    " row_id TEXT PRIMARY KEY, kind TEXT NOT NULL, saga_id TEXT NOT NULL, payload TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL, sent_at DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS saga_outbox_unsent ON saga_outbox (sent_at, created_at)",
)
#: Row kinds.
EVENT, DEADLINE = "event", "deadline"
#: Most rows one relay pass sends.
RELAY_BATCH = 500
#: The CloudEvents extension attribute that carries the saga id on every event of a saga.
SAGA_ID_ATTRIBUTE = "sagaid"


def ensure_schema(connection: Any) -> None:
    """Create the outbox table if it is missing (once per connection)."""
    run_once(connection, SCHEMA, "outbox")


@dataclass(frozen=True)
class Deadline:
    """A task the broker delivers at ``due_at`` (a Unix time)."""

    deadline_id: str
    task: str
    queue: str
    args: list[Any]
    due_at: float


def add_event(connection: Any, p: str, saga_id: str, outgoing: OutgoingEvent, now: float) -> str:
    """Write ``outgoing`` (with the saga id attribute) to the outbox; returns the row id (the event id)."""
    event = outgoing.event
    attributes = {**event.attributes(), SAGA_ID_ATTRIBUTE: saga_id, "datacontenttype": event.datacontenttype}
    payload = {"attributes": attributes, "body": outgoing.body.decode()}
    connection.execute(
        f"INSERT INTO saga_outbox VALUES ({p}, {p}, {p}, {p}, {p}, NULL)",
        (event.id, EVENT, saga_id, json.dumps(payload), now),
    )
    return event.id


def add_deadline(connection: Any, p: str, saga_id: str, deadline: Deadline, now: float) -> str:
    """Write a deadline task to the outbox; returns the row id (the deadline id)."""
    payload = {
        "task": deadline.task,
        "queue": deadline.queue,
        "args": deadline.args,
        "due_at": deadline.due_at,
    }
    connection.execute(
        f"INSERT INTO saga_outbox VALUES ({p}, {p}, {p}, {p}, {p}, NULL)",
        (deadline.deadline_id, DEADLINE, saga_id, json.dumps(payload), now),
    )
    return deadline.deadline_id


def rebuild_event(payload: dict[str, Any]) -> OutgoingEvent:
    """The :class:`OutgoingEvent` an event row describes."""
    attributes = dict(payload["attributes"])
    known = {
        name: attributes.pop(name, None) for name in ("id", "source", "type", "time", "dataschema", "subject")
    }
    content_type = attributes.pop("datacontenttype", "application/json")
    attributes.pop("specversion", None)
    event = CloudEvent(
        id=str(known["id"]),
        source=str(known["source"]),
        type=str(known["type"]),
        time=str(known["time"]),
        datacontenttype=content_type,
        dataschema=known["dataschema"],
        subject=known["subject"],
        extensions=attributes,
    )
    return OutgoingEvent(event, str(payload["body"]).encode())


def unsent(
    store: CompletionStore, row_ids: list[str] | None = None, created_before: float | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """``(row id, kind, payload)`` of unsent rows: those named, or those created before a time."""
    p = store.placeholder
    with store.transaction() as connection:
        ensure_schema(connection)
        if row_ids is not None:
            if not row_ids:
                return []
            query = (
                f"SELECT row_id, kind, payload FROM saga_outbox WHERE sent_at IS NULL"
                f" AND row_id IN ({', '.join(p for _ in row_ids)})"
            )
            rows = connection.execute(query, tuple(row_ids)).fetchall()
        else:
            query = (
                "SELECT row_id, kind, payload FROM saga_outbox WHERE sent_at IS NULL"
                f" AND created_at < {p} ORDER BY created_at LIMIT {RELAY_BATCH}"
            )
            rows = connection.execute(
                query, (created_before if created_before is not None else 1e18,)
            ).fetchall()
    return [(str(row_id), str(kind), json.loads(payload)) for row_id, kind, payload in rows]


def relay(
    app: Celery,
    store: CompletionStore,
    row_ids: list[str] | None = None,
    created_before: float | None = None,
    now: float | None = None,
) -> int:
    """Publish unsent outbox rows with confirms, then mark them sent.

    Args:
        app: the platform app (broker and settings).
        store: the state store holding the outbox.
        row_ids: only these rows (the fast path right after a commit).
        created_before: otherwise, rows created before this Unix time.
        now: the time written as ``sent_at`` (default: the current time).

    Returns:
        How many rows were sent.

    Raises:
        PublishError: the broker did not confirm the events (they stay unsent).
    """
    import time

    rows = unsent(store, row_ids, created_before)
    if not rows:
        return 0
    events = [rebuild_event(payload) for _, kind, payload in rows if kind == EVENT]
    if len(events) == 1:
        publish_one(app, events[0])  # a pooled connection: the fast path sends one or two events
    elif events:
        publish_many(app, events)
    for row_id, kind, payload in rows:
        if kind == DEADLINE:
            app.send_task(
                payload["task"],
                task_id=row_id,  # a deadline relayed twice is one task id: it runs once
                args=payload["args"],
                queue=payload["queue"],
                eta=datetime.fromtimestamp(payload["due_at"], UTC),
            )
    p = store.placeholder
    sent = [row_id for row_id, _, _ in rows]
    with store.transaction() as connection:
        connection.execute(
            f"UPDATE saga_outbox SET sent_at = {p} WHERE row_id IN ({', '.join(p for _ in sent)})",
            (now or time.time(), *sent),
        )
    return len(rows)


def pending_count(store: CompletionStore) -> int:
    """How many outbox rows are not sent yet."""
    with store.transaction() as connection:
        ensure_schema(connection)
        row = connection.execute("SELECT COUNT(*) FROM saga_outbox WHERE sent_at IS NULL").fetchone()
    return int(row[0])
