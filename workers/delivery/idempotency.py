"""The idempotency store: which task ids have completed.

A redelivered, retried or replayed message keeps its task id; if that id is
recorded here, its side effects were committed and the body is not run again.
SQLite (one file, one host) by default; PostgreSQL by URL when workers span
hosts. Each process opens its own connection on first use (after the prefork
fork), and tasks can write their side effects in the same transaction as the
completion mark (``PlatformTask.transaction``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kombu.utils import json

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS completed_tasks ("
    " task_id TEXT PRIMARY KEY,"
    " task_name TEXT NOT NULL,"
    " completed_at DOUBLE PRECISION NOT NULL,"
    " result TEXT)"
)
#: Stores made before return values were recorded lack the column; it is added on open.
RESULT_COLUMN = "ALTER TABLE completed_tasks ADD COLUMN result TEXT"


class AlreadyCompleted(Exception):
    """Another delivery of this task id committed its completion first: this one's transaction
    was rolled back (raised by :meth:`PlatformTask.transaction`, handled by the task base)."""


@dataclass(frozen=True)
class Completion:
    """A recorded completion: the task's return value, if it was recorded.

    ``result_known`` is False for a value that could not be encoded as JSON,
    for completions recorded before values were, and for a task that marked
    itself completed in :meth:`transaction` and died before returning.
    """

    result_known: bool
    result: Any = None


def encode_result(value: Any) -> str | None:
    """``value`` as the JSON a completion records, or None if it has no JSON form.

    Kombu's JSON, as Celery's result serializer writes it (dates, UUIDs and
    decimals come back as such).
    """
    try:
        return json.dumps(value)
    except (TypeError, ValueError, OverflowError):
        return None


def decode_result(text: str | None) -> Completion:
    """The :class:`Completion` recorded as ``text`` (None: the value is not known)."""
    if text is None:
        return Completion(result_known=False)
    return Completion(result_known=True, result=json.loads(text))


class CompletionStore(Protocol):
    """What the task base needs from a store."""

    #: The DB-API placeholder of its driver (``?`` or ``%s``), for callers' own SQL.
    placeholder: str

    def is_completed(self, task_id: str) -> bool: ...

    def completion(self, task_id: str) -> Completion | None: ...

    def mark_completed(self, task_id: str, task_name: str, result: str | None = None) -> None: ...

    def record_result(self, task_id: str, result: str | None) -> None: ...

    def transaction(self) -> Any: ...

    def mark_completed_in(
        self, connection: Any, task_id: str, task_name: str, result: str | None = None
    ) -> bool: ...

    def forget_before(self, cutoff: float) -> int: ...


class _SQLStore:
    """What both stores share; they differ in SQL dialect and connections."""

    #: The DB-API placeholder of the driver.
    placeholder = "?"
    #: Inserts a completion row, doing nothing if the id is already there.
    insert_completed = ""

    def __init__(self) -> None:
        self._local = threading.local()

    def _connection(self) -> Any:
        raise NotImplementedError

    def is_completed(self, task_id: str) -> bool:
        return self.completion(task_id) is not None

    def completion(self, task_id: str) -> Completion | None:
        """The completion recorded for ``task_id``, or None if it has not completed."""
        query = f"SELECT result FROM completed_tasks WHERE task_id = {self.placeholder}"
        row = self._connection().execute(query, (task_id,)).fetchone()
        return None if row is None else decode_result(row[0])

    def mark_completed(self, task_id: str, task_name: str, result: str | None = None) -> None:
        """Record ``task_id`` as completed with its return value (JSON text, see :func:`encode_result`)."""
        self.mark_completed_in(self._connection(), task_id, task_name, result)

    def mark_completed_in(
        self, connection: Any, task_id: str, task_name: str, result: str | None = None
    ) -> bool:
        """Record ``task_id`` as completed on ``connection``; False if it already was.

        Inside a transaction, False means another delivery of the same id
        committed first (two copies of one message ran at once, e.g. a publish
        retried while the broker was blocked): the caller rolls back.
        """
        cursor = connection.execute(self.insert_completed, (task_id, task_name, time.time(), result))
        return bool(cursor.rowcount)

    def record_result(self, task_id: str, result: str | None) -> None:
        """Add the return value to a completion that was recorded without it."""
        query = f"UPDATE completed_tasks SET result = {self.placeholder} WHERE task_id = {self.placeholder}"
        self._connection().execute(query, (result, task_id))

    def forget_before(self, cutoff: float) -> int:
        """Forget completions recorded before ``cutoff`` (a Unix time); returns how many."""
        query = f"DELETE FROM completed_tasks WHERE completed_at < {self.placeholder}"
        return self._connection().execute(query, (cutoff,)).rowcount


#: Seconds processes opening the same new SQLite file may wait for each other.
OPEN_TIMEOUT = 30.0


def use_write_ahead_log(connection: sqlite3.Connection) -> None:
    """Put the database in WAL mode (kept in the file), waiting out other processes doing the same.

    Switching needs the database to itself, and SQLite answers "database is
    locked" at once instead of waiting when another process holds it.
    """
    deadline = time.monotonic() + OPEN_TIMEOUT
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SQLiteStore(_SQLStore):
    """Completed ids in a SQLite file (WAL mode, safe across processes on one host)."""

    placeholder = "?"
    insert_completed = "INSERT OR IGNORE INTO completed_tasks VALUES (?, ?, ?, ?)"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            use_write_ahead_log(connection)
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(SCHEMA)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(completed_tasks)")}
            if "result" not in columns:
                try:
                    connection.execute(RESULT_COLUMN)
                except sqlite3.OperationalError:  # another process added it first
                    pass
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


class PostgresStore(_SQLStore):
    """Completed ids in PostgreSQL (workers on several hosts)."""

    placeholder = "%s"
    insert_completed = "INSERT INTO completed_tasks VALUES (%s, %s, %s, %s) ON CONFLICT (task_id) DO NOTHING"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            import psycopg  # optional dependency: the 'postgres' extra

            connection = psycopg.connect(self.url, autocommit=True)
            connection.execute(SCHEMA)
            try:
                connection.execute(RESULT_COLUMN.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS"))
            except psycopg.Error:  # another process added it at the same moment
                pass
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        connection = self._connection()
        with connection.transaction():
            yield connection


_stores: dict[tuple[int, str], CompletionStore] = {}


def open_store(url: str) -> CompletionStore:
    """The store for ``url`` in this process (one per process, opened lazily).

    Raises:
        ValueError: the URL names no supported database.
    """
    key = (os.getpid(), url)
    store = _stores.get(key)
    if store is None:
        store = _create(url)
        _stores[key] = store
    return store


def _create(url: str) -> CompletionStore:
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///") or ":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ValueError(f"unsupported state store URL {url!r} (sqlite:/// or postgresql://)")
