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
from pathlib import Path
from typing import Any, Protocol

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS completed_tasks ("
    " task_id TEXT PRIMARY KEY,"
    " task_name TEXT NOT NULL,"
    " completed_at DOUBLE PRECISION NOT NULL)"
)


class CompletionStore(Protocol):
    """What the task base needs from a store."""

    #: The DB-API placeholder of its driver (``?`` or ``%s``), for callers' own SQL.
    placeholder: str

    def is_completed(self, task_id: str) -> bool: ...

    def mark_completed(self, task_id: str, task_name: str) -> None: ...

    def transaction(self) -> Any: ...

    def mark_completed_in(self, connection: Any, task_id: str, task_name: str) -> None: ...

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
        query = f"SELECT 1 FROM completed_tasks WHERE task_id = {self.placeholder}"
        return self._connection().execute(query, (task_id,)).fetchone() is not None

    def mark_completed(self, task_id: str, task_name: str) -> None:
        self.mark_completed_in(self._connection(), task_id, task_name)

    def mark_completed_in(self, connection: Any, task_id: str, task_name: str) -> None:
        connection.execute(self.insert_completed, (task_id, task_name, time.time()))

    def forget_before(self, cutoff: float) -> int:
        """Forget completions recorded before ``cutoff`` (a Unix time); returns how many."""
        query = f"DELETE FROM completed_tasks WHERE completed_at < {self.placeholder}"
        return self._connection().execute(query, (cutoff,)).rowcount


class SQLiteStore(_SQLStore):
    """Completed ids in a SQLite file (WAL mode, safe across processes on one host)."""

    placeholder = "?"
    insert_completed = "INSERT OR IGNORE INTO completed_tasks VALUES (?, ?, ?)"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(SCHEMA)
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
    insert_completed = "INSERT INTO completed_tasks VALUES (%s, %s, %s) ON CONFLICT (task_id) DO NOTHING"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            import psycopg  # optional dependency: the 'postgres' extra

            connection = psycopg.connect(self.url, autocommit=True)
            connection.execute(SCHEMA)
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
