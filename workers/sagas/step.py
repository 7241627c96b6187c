"""One saga step inside a service's local transaction: decide, log, do the work, emit, relay.

::

    with saga_step(task, ORDER_SAGA, "inventory", saga_id, event.id, event.type) as step:
        if step.acting:                       # Move or Act: do the service's work
            reserve(step.connection, ...)     # the service's own tables
            step.emit(prepare("inventory.reserved", {...}))
    # committed: the saga's move, its log row, the service's rows, the outbox rows
    # and the handler's completion mark; then the outbox rows are relayed

The decision is :func:`workers.sagas.definition.decide`; a *late* event (its
step is past) is logged as ``late`` and the body does nothing; an event the
saga's log already holds for this service is a duplicate and does nothing
either (the handler's completion mark usually stops it before that). Entering
a state with a deadline writes a deadline row to the outbox in the same
transaction, so the broker starts holding it once the transaction committed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from config.app import platform_config
from workers.sagas import outbox, store
from workers.sagas.definition import (
    Act,
    Decision,
    Late,
    Move,
    SagaDefinition,
    deadline_fires,
    decide,
    failed_compensation,
)

if TYPE_CHECKING:
    from celery import Celery

    from workers.delivery.idempotency import CompletionStore
    from workers.events.publisher import OutgoingEvent

logger = logging.getLogger(__name__)

#: The event type written in the log for a deadline that fired.
DEADLINE_EVENT = "saga.deadline"
#: The event type written in the log for a compensation that was dead-lettered.
DEAD_LETTER_EVENT = "saga.dead_letter"


@dataclass
class SagaStep:
    """What a handler sees inside its transaction."""

    connection: Any
    placeholder: str
    definition: SagaDefinition
    service: str
    saga: store.SagaInstance
    decision: Decision
    #: The event already logged by this service: nothing to do.
    duplicate: bool = False
    #: Outbox rows written in this transaction, relayed right after commit.
    rows: list[str] = field(default_factory=list)
    now: float = field(default_factory=store.now)

    @property
    def acting(self) -> bool:
        """Whether the service should do its work (the event moved the saga, or is an act)."""
        return not self.duplicate and isinstance(self.decision, Move | Act)

    @property
    def late(self) -> bool:
        return not self.duplicate and isinstance(self.decision, Late)

    def emit(self, outgoing: OutgoingEvent) -> str:
        """Write ``outgoing`` to the outbox with this saga's id; returns its event id."""
        self.rows.append(
            outbox.add_event(self.connection, self.placeholder, self.saga.saga_id, outgoing, self.now)
        )
        return outgoing.event.id


def open_tables(connection: Any) -> None:
    """Create the saga and outbox tables if missing."""
    store.ensure_schema(connection)
    outbox.ensure_schema(connection)


def schedule_deadlines(
    connection: Any,
    p: str,
    definition: SagaDefinition,
    saga_id: str,
    state: str,
    now: float,
    whole: bool = False,
) -> list[str]:
    """Outbox rows for the deadline of ``state`` (and of the whole saga with ``whole``)."""
    rows = []
    guarded: list[tuple[str | None, float | None]] = [(state, definition.deadline_of(state))]
    if whole and definition.saga_deadline:
        guarded.append((None, definition.saga_deadline))
    for expected, seconds in guarded:
        if not seconds:
            continue
        deadline_id = f"deadline:{uuid.uuid4()}"
        deadline = outbox.Deadline(
            deadline_id, definition.deadline_task, definition.deadline_queue, [saga_id, expected, deadline_id],
            now + seconds,
        )  # fmt: skip
        rows.append(outbox.add_deadline(connection, p, saga_id, deadline, now))
    return rows


def begin(
    connection: Any,
    p: str,
    definition: SagaDefinition,
    saga_id: str,
    service: str,
    first: OutgoingEvent,
    data: dict[str, Any],
) -> SagaStep:
    """Start a saga in its initial state, in the caller's transaction, with its first event.

    Returns:
        The step (its ``rows`` are to be relayed after the caller commits).
    """
    open_tables(connection)
    now = store.now()
    saga = store.create(connection, p, saga_id, definition.name, definition.initial, data, now)
    store.append_log(
        connection,
        p,
        saga_id,
        None,
        definition.initial,
        first.event.id,
        first.event.type,
        service,
        store.MOVE,
        now,
    )
    step = SagaStep(connection, p, definition, service, saga, Move(definition.initial), now=now)
    step.emit(first)
    step.rows.extend(
        schedule_deadlines(connection, p, definition, saga_id, definition.initial, now, whole=True)
    )
    return step


def _apply(step: SagaStep, event_id: str, event_type: str, note: str = "") -> None:
    """Log the decision (and move the saga) inside the step's transaction."""
    c, p, saga = step.connection, step.placeholder, step.saga
    if store.logged(c, p, saga.saga_id, event_id, step.service):
        step.duplicate = True
        return
    decision = step.decision
    if isinstance(decision, Move):
        to, kind = decision.to, store.MOVE
        step.saga = store.move(c, p, saga, to, step.now, step.definition.is_terminal(to))
        step.rows.extend(schedule_deadlines(c, p, step.definition, saga.saga_id, to, step.now))
    elif isinstance(decision, Act):
        # An act bumps the version too, so a concurrent move of the saga conflicts with it.
        to, kind = saga.state, store.ACT
        step.saga = store.move(c, p, saga, saga.state, step.now, saga.ended)
    else:
        to, kind, note = saga.state, store.LATE, note or "late"
        logger.info(
            "saga %s: %s %s arrived late (state %s); not applied", saga.saga_id, event_type, event_id, to
        )
    row = (saga.saga_id, saga.state, to, event_id, event_type, step.service, kind, step.now, note)
    store.append_log(c, p, *row)


@contextmanager
def _transaction_step(
    task: Any, definition: SagaDefinition, service: str, saga_id: str
) -> Iterator[SagaStep]:
    """The saga read in the task's transaction (which also marks the task completed); rows relayed after."""
    p = task.completion_store().placeholder
    with task.transaction() as connection:
        open_tables(connection)
        saga = store.require(connection, p, saga_id)
        step = SagaStep(connection, p, definition, service, saga, Late(saga.state))
        yield step
    relay_after_commit(task.app, task.completion_store(), step.rows)


@contextmanager
def saga_step(
    task: Any, definition: SagaDefinition, service: str, saga_id: str, event_id: str, event_type: str
) -> Iterator[SagaStep]:
    """A handler's step of the saga, in the task's transaction (which also marks it completed).

    Raises:
        UnknownSaga: the saga is not in this state store.
        SagaConflict: another worker moved the saga meanwhile (transient: retried).
        SagaDefinitionError: the event type is not part of the saga.
    """
    with _transaction_step(task, definition, service, saga_id) as step:
        step.decision = decide(definition, step.saga.state, event_type)
        _apply(step, event_id, event_type)
        yield step


@contextmanager
def deadline_step(
    task: Any, definition: SagaDefinition, service: str, saga_id: str, expected: str | None, deadline_id: str
) -> Iterator[SagaStep]:
    """The step of a deadline the broker delivered: ``acting`` when it moved the saga to its timeout state."""
    with _transaction_step(task, definition, service, saga_id) as step:
        fired = deadline_fires(definition, step.saga.state, expected)
        if fired is None:
            step.duplicate = True  # the step answered in time: nothing to log
        else:
            step.decision = fired
            _apply(step, deadline_id, DEADLINE_EVENT, f"deadline of {expected or 'the whole saga'} passed")
        yield step


def record_compensation_failure(
    app: Celery, completions: CompletionStore, definition: SagaDefinition, service: str, saga_id: str,
    event_id: str, error: str,
) -> bool:  # fmt: skip
    """Move the saga to ``compensation_failed`` because its compensation was dead-lettered.

    Returns:
        Whether it moved (False: it is already over, or already failed for this event).
    """
    p = completions.placeholder
    for _ in range(5):
        try:
            with completions.transaction() as connection:
                open_tables(connection)
                saga = store.require(connection, p, saga_id)
                moved = failed_compensation(definition, saga.state)
                if moved is None:
                    return False
                step = SagaStep(connection, p, definition, service, saga, moved)
                _apply(step, f"dead-letter:{event_id}", DEAD_LETTER_EVENT, error)
                return not step.duplicate
        except store.SagaConflict:
            continue
    return False


def relay_after_commit(app: Celery, completions: CompletionStore, rows: list[str]) -> None:
    """Relay the rows a transaction just committed; on failure the periodic relay sends them later."""
    if not rows or not platform_config(app).settings.saga_relay_after_commit:
        return
    try:
        outbox.relay(app, completions, row_ids=rows)
    except Exception as exc:  # noqa: BLE001 - committed rows are safe; the periodic relay sends them
        logger.warning("outbox: %d rows left for the periodic relay: %s", len(rows), exc)
