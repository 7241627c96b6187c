"""What operators do with sagas: list, show (timeline and dead letters), retry, resolve.

The CLI (:mod:`workers.ops.cli.saga`) and the Flower page call these. Reads
come from the state store (:mod:`workers.sagas.store`); a saga's dead letters
are found by browsing every DLQ of the topology without consuming anything,
matching the ``cloudEvents_sagaid`` header the dead letter kept from its event.

- **retry**: a saga in ``compensation_failed`` goes back to the state its
  compensation failed in (logged as a move by ``operator``), then its dead
  letters are replayed (audited, as ``dlq replay`` does), so the compensation
  runs again and moves the saga on as usual. Moving back first matters: a
  replayed refund must find the saga where refunds apply.
- **resolve**: a saga that has not ended as confirmed or cancelled is closed
  as ``resolved`` with the operator's note (for money or stock settled by
  hand); its dead letters stay where they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workers.ops.dlq import DeadLetterMessage, Filter, UnknownQueue, browse, replay_and_audit
from workers.sagas import store
from workers.sagas.definition import COMPENSATION_FAILED, RESOLVED
from workers.sagas.outbox import SAGA_ID_ATTRIBUTE
from workers.sagas.step import open_tables

if TYPE_CHECKING:
    from kombu import Connection

    from workers.delivery.idempotency import CompletionStore

#: The header a saga's dead letter carries its saga id in (the event's own attribute).
SAGA_ID_HEADER = "cloudEvents_" + SAGA_ID_ATTRIBUTE
#: The service name operators' moves are logged under.
OPERATOR = "operator"
#: States a saga has ended well or was closed in: resolve refuses them.
CLOSED = frozenset({"confirmed", "cancelled", RESOLVED})


class SagaNotFound(LookupError):
    """No saga with that id in the state store."""


class WrongState(ValueError):
    """The saga is not in a state the command applies to."""


@dataclass(frozen=True)
class SagaLetter:
    """One dead letter of a saga: which DLQ holds it and what it says."""

    queue: str
    letter: DeadLetterMessage


@dataclass
class SagaView:
    """A saga with its log and dead letters."""

    saga: store.SagaInstance
    log: list[store.LogEntry]
    letters: list[SagaLetter] = field(default_factory=list)
    #: Why the letters could not be looked up (the broker was unreachable), if so.
    letters_error: str = ""


def list_sagas(
    completions: CompletionStore,
    states: Iterable[str] = (),
    started_before: float | None = None,
    limit: int = 1000,
) -> list[store.SagaInstance]:
    """Sagas oldest first, optionally only those in ``states`` or started before a Unix time."""
    with completions.transaction() as connection:
        open_tables(connection)
        return store.listing(connection, completions.placeholder, tuple(states), started_before, limit)


def load_view(completions: CompletionStore, saga_id: str) -> SagaView:
    """The saga and its log.

    Raises:
        SagaNotFound: no such saga.
    """
    p = completions.placeholder
    with completions.transaction() as connection:
        saga = _require(connection, p, saga_id)
        return SagaView(saga, store.history(connection, p, saga_id))


def _require(connection: Any, p: str, saga_id: str) -> store.SagaInstance:
    open_tables(connection)
    saga = store.load(connection, p, saga_id)
    if saga is None:
        raise SagaNotFound(f"no saga {saga_id!r} in the state store")
    return saga


def saga_letters(connection: Connection, queues: Iterable[str], saga_id: str) -> list[SagaLetter]:
    """Every dead letter of ``saga_id`` in the DLQs of ``queues`` (left where they are)."""
    found: list[SagaLetter] = []
    for queue in queues:
        try:
            letters = browse(connection, queue)
        except UnknownQueue:
            continue
        found.extend(
            SagaLetter(queue, letter)
            for letter in letters
            if str(letter.headers.get(SAGA_ID_HEADER)) == saga_id
        )
    return found


def _operator_move(
    completions: CompletionStore, saga_id: str, to: str, allowed: Any, action: str, note: str
) -> store.SagaInstance:
    """Move the saga to ``to`` as the operator's ``action`` if ``allowed(saga)``, logging ``note``."""
    p = completions.placeholder
    with completions.transaction() as connection:
        saga = _require(connection, p, saga_id)
        if not allowed(saga):
            raise WrongState(f"saga {saga_id} is {saga.state}; {action} does not apply to it")
        now = store.now()
        moved = store.move(connection, p, saga, to, now, ended=to == RESOLVED)
        store.append_log(
            connection, p, saga_id, saga.state, to, f"{OPERATOR}:{uuid.uuid4()}", f"saga.{action}",
            OPERATOR, store.MOVE, now, note,
        )  # fmt: skip
        return moved


def state_before_failure(completions: CompletionStore, saga_id: str) -> str:
    """The state a saga's compensation failed in (where ``retry`` sends it back)."""
    view = load_view(completions, saga_id)
    for entry in reversed(view.log):
        if entry.kind == store.MOVE and entry.to_state == COMPENSATION_FAILED and entry.from_state:
            return entry.from_state
    raise WrongState(f"saga {saga_id} is {view.saga.state}: its log shows no failed compensation")


def retry_saga(
    completions: CompletionStore,
    connection: Connection,
    queues: Iterable[str],
    saga_id: str,
    *,
    who: str,
    run_dir: str,
) -> tuple[store.SagaInstance, int]:
    """Send a ``compensation_failed`` saga back and replay its dead letters.

    Returns:
        The saga as moved back, and how many dead letters were replayed.

    Raises:
        SagaNotFound: no such saga.
        WrongState: the saga is not in ``compensation_failed``, or it has no dead letter to replay.
    """
    view = load_view(completions, saga_id)
    if view.saga.state != COMPENSATION_FAILED:
        raise WrongState(f"saga {saga_id} is {view.saga.state}; only a compensation_failed saga is retried")
    letters = saga_letters(connection, queues, saga_id)
    if not letters:
        raise WrongState(f"saga {saga_id} has no dead letter to replay (purged?); resolve it instead")
    back = state_before_failure(completions, saga_id)
    moved = _operator_move(
        completions,
        saga_id,
        back,
        lambda s: s.state == COMPENSATION_FAILED,
        "retry",
        f"by {who}: back to {back}",
    )
    replayed = 0
    for queue in dict.fromkeys(letter.queue for letter in letters):
        ids = tuple(letter.letter.task_id for letter in letters if letter.queue == queue)
        result = replay_and_audit(connection, queue, Filter(ids=ids), who=who, run_dir=run_dir)
        replayed += result.replayed
    return moved, replayed


def resolve_saga(completions: CompletionStore, saga_id: str, *, who: str, note: str) -> store.SagaInstance:
    """Close a saga that did not end well as ``resolved``, with the operator's note.

    Raises:
        SagaNotFound: no such saga.
        WrongState: it is confirmed, cancelled or already resolved.
    """
    return _operator_move(
        completions, saga_id, RESOLVED, lambda s: s.state not in CLOSED, "resolve", f"by {who}: {note}"
    )


@dataclass(frozen=True)
class SagaSummary:
    """What the metrics say about sagas: counts by state, the oldest running, the stuck ones."""

    by_state: dict[str, int]
    #: When the oldest saga still running started (None: none is running).
    oldest_running_started: float | None
    #: Running sagas older than the stuck threshold.
    stuck: int


def summarize_sagas(completions: CompletionStore, now: float, stuck_after: float) -> SagaSummary | None:
    """The sagas' summary, or None when the state store holds no saga tables (no saga ever ran)."""
    with completions.transaction() as connection:
        try:
            by_state = store.counts_by_state(connection)
        except Exception:  # noqa: BLE001 - no saga table yet (sqlite3 / psycopg "no such table")
            return None
        oldest = store.oldest_running(connection)
        stuck = store.running_started_before(connection, completions.placeholder, now - stuck_after)
    return SagaSummary(by_state, oldest, stuck)
