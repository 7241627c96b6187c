"""The saga tables in the platform's state store: instances, the log, and reads for operators.

::

    saga_instances  saga_id | saga_type | state | version | started_at | updated_at | data | ended
    saga_log        saga_id | seq | from_state | to_state | event_id | event_type | service | at | kind | note

Every function takes an open DB-API connection and its placeholder (``?`` for
SQLite, ``%s`` for PostgreSQL), so a service writes its own tables, the saga's
move and its outbox rows in *one* local transaction (the one
:meth:`workers.delivery.task.PlatformTask.transaction` opens, which also
records the handler's completion).

Concurrency is optimistic: a move updates the instance only ``WHERE version =
<the version read>``; a competing worker that moved it first leaves that
update with no row, and :class:`SagaConflict` (a transient error) makes the
loser retry with backoff, when it reads the new state and decides again. The
log's primary key ``(saga_id, seq)`` and its unique ``(saga_id, event_id,
service)`` hold the same line at the database: two writers can never both log
a transition, nor one event twice. On SQLite the write lock taken by ``BEGIN
IMMEDIATE`` serializes writers before they read, so the conflict path is
PostgreSQL's (read committed) in practice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers.errors import PermanentError, TransientError

#: Tables of the saga runtime (created on first use; both dialects).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS saga_instances ("
    " saga_id TEXT PRIMARY KEY, saga_type TEXT NOT NULL, state TEXT NOT NULL,"
    " version INTEGER NOT NULL, started_at DOUBLE PRECISION NOT NULL,"
    " updated_at DOUBLE PRECISION NOT NULL, data TEXT NOT NULL, ended INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS saga_log ("
    " saga_id TEXT NOT NULL, seq INTEGER NOT NULL, from_state TEXT, to_state TEXT NOT NULL,"
    " event_id TEXT NOT NULL, event_type TEXT NOT NULL, service TEXT NOT NULL,"
    " at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (saga_id, seq), UNIQUE (saga_id, event_id, service))",
    "CREATE INDEX IF NOT EXISTS saga_instances_state ON saga_instances (state, started_at)",
)

#: Log kinds: a transition, a service's work that did not move the saga, an event after its step.
MOVE, ACT, LATE = "move", "act", "late"


class SagaConflict(TransientError):
    """Another worker moved the saga between this worker's read and write; retried."""


class UnknownSaga(PermanentError):
    """An event names a saga id that the state store does not hold."""


@dataclass(frozen=True)
class SagaInstance:
    """One saga as stored."""

    saga_id: str
    saga_type: str
    state: str
    version: int
    started_at: float
    updated_at: float
    data: dict[str, Any]
    #: Whether the saga is over (its definition's terminal states, failed compensation, resolved).
    ended: bool = False


@dataclass(frozen=True)
class LogEntry:
    """One row of a saga's log."""

    saga_id: str
    seq: int
    from_state: str | None
    to_state: str
    event_id: str
    event_type: str
    service: str
    at: float
    kind: str
    note: str


#: The connections each DDL ``name`` already ran on, held by id *and* by reference: with the
#: id alone, a new connection that reused a closed one's address (a new database) skipped its
#: tables. Holding them keeps such an address taken; a process has a handful of connections
#: (one per thread and store). sqlite3 connections can't be weakly referenced.
_ready: dict[tuple[int, str], Any] = {}


def run_once(connection: Any, statements: tuple[str, ...], name: str) -> None:
    """Run ``statements`` (idempotent DDL) once per connection and ``name``."""
    key = (id(connection), name)
    if _ready.get(key) is connection:
        return
    for statement in statements:
        connection.execute(statement)
    _ready[key] = connection


def ensure_schema(connection: Any) -> None:
    """Create the saga tables on ``connection``'s database if they are missing (once per connection)."""
    run_once(connection, SCHEMA, "sagas")


def create(
    connection: Any, p: str, saga_id: str, saga_type: str, state: str, data: dict[str, Any], now: float
) -> SagaInstance:
    """Insert a new saga in ``state`` (version 1)."""
    connection.execute(
        f"INSERT INTO saga_instances VALUES ({p}, {p}, {p}, 1, {p}, {p}, {p}, 0)",
        (saga_id, saga_type, state, now, now, json.dumps(data, sort_keys=True)),
    )
    return SagaInstance(saga_id, saga_type, state, 1, now, now, data, False)


def load(connection: Any, p: str, saga_id: str) -> SagaInstance | None:
    """The saga ``saga_id``, or None."""
    row = connection.execute(
        "SELECT saga_id, saga_type, state, version, started_at, updated_at, data, ended"
        f" FROM saga_instances WHERE saga_id = {p}",
        (saga_id,),
    ).fetchone()
    return None if row is None else _instance(row)


def require(connection: Any, p: str, saga_id: str) -> SagaInstance:
    """The saga ``saga_id``.

    Raises:
        UnknownSaga: no such saga in this state store.
    """
    saga = load(connection, p, saga_id)
    if saga is None:
        raise UnknownSaga(f"saga {saga_id!r} is not in the state store (wrong PLATFORM_STATE_URL?)")
    return saga


def move(
    connection: Any, p: str, saga: SagaInstance, to: str, now: float, ended: bool = False
) -> SagaInstance:
    """Move ``saga`` to ``to`` (a state that ends it with ``ended``) if nobody moved it since it was read.

    Raises:
        SagaConflict: its version changed meanwhile (another worker moved it).
    """
    cursor = connection.execute(
        f"UPDATE saga_instances SET state = {p}, version = version + 1, updated_at = {p}, ended = {p}"
        f" WHERE saga_id = {p} AND version = {p}",
        (to, now, int(ended), saga.saga_id, saga.version),
    )
    if cursor.rowcount != 1:
        raise SagaConflict(f"saga {saga.saga_id} moved while {to!r} was being applied; retrying")
    return SagaInstance(
        saga.saga_id, saga.saga_type, to, saga.version + 1, saga.started_at, now, saga.data, ended
    )


def logged(connection: Any, p: str, saga_id: str, event_id: str, service: str) -> bool:
    """Whether ``service`` already logged ``event_id`` for this saga."""
    row = connection.execute(
        f"SELECT 1 FROM saga_log WHERE saga_id = {p} AND event_id = {p} AND service = {p}",
        (saga_id, event_id, service),
    ).fetchone()
    return row is not None


def append_log(
    connection: Any,
    p: str,
    saga_id: str,
    from_state: str | None,
    to_state: str,
    event_id: str,
    event_type: str,
    service: str,
    kind: str,
    now: float,
    note: str = "",
) -> int:
    """Append one row to the saga's log and return its sequence number."""
    row = connection.execute(
        f"SELECT COALESCE(MAX(seq), 0) FROM saga_log WHERE saga_id = {p}", (saga_id,)
    ).fetchone()
    seq = int(row[0]) + 1
    connection.execute(
        f"INSERT INTO saga_log VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
        (saga_id, seq, from_state, to_state, event_id, event_type, service, now, kind, note[:500]),
    )
    return seq


def history(connection: Any, p: str, saga_id: str) -> list[LogEntry]:
    """The saga's log, in order."""
    rows = connection.execute(
        "SELECT saga_id, seq, from_state, to_state, event_id, event_type, service, at, kind, note"
        f" FROM saga_log WHERE saga_id = {p} ORDER BY seq",
        (saga_id,),
    ).fetchall()
    return [LogEntry(*row) for row in rows]


def listing(
    connection: Any,
    p: str,
    states: Sequence[str] = (),
    started_before: float | None = None,
    limit: int = 1000,
) -> list[SagaInstance]:
    """Sagas, oldest first, optionally only those in ``states`` or started before a time."""
    where: list[str] = []
    params: list[Any] = []
    if states:
        where.append(f"state IN ({', '.join(p for _ in states)})")
        params.extend(states)
    if started_before is not None:
        where.append(f"started_at < {p}")
        params.append(started_before)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = connection.execute(
        "SELECT saga_id, saga_type, state, version, started_at, updated_at, data, ended"
        f" FROM saga_instances{clause} ORDER BY started_at LIMIT {int(limit)}",
        tuple(params),
    ).fetchall()
    return [_instance(row) for row in rows]


def counts_by_state(connection: Any) -> dict[str, int]:
    """How many sagas are in each state."""
    rows = connection.execute("SELECT state, COUNT(*) FROM saga_instances GROUP BY state").fetchall()
    return {str(state): int(count) for state, count in rows}


def oldest_running(connection: Any) -> float | None:
    """When the oldest saga that has not ended started (None: none is running)."""
    row = connection.execute("SELECT MIN(started_at) FROM saga_instances WHERE ended = 0").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def running_started_before(connection: Any, p: str, moment: float) -> int:
    """How many sagas that have not ended started before ``moment``."""
    row = connection.execute(
        f"SELECT COUNT(*) FROM saga_instances WHERE ended = 0 AND started_at < {p}", (moment,)
    ).fetchone()
    return int(row[0])


def _instance(row: Sequence[Any]) -> SagaInstance:
    return SagaInstance(
        str(row[0]), str(row[1]), str(row[2]), int(row[3]), float(row[4]), float(row[5]), json.loads(row[6]),
        bool(row[7]),
    )  # fmt: skip


def now() -> float:
    """The current Unix time (one clock for every row)."""
    return time.time()
