"""The idempotency store: completed ids, side effects in the same transaction, pruning.

SQLite runs on a file under tmp_path. PostgreSQL runs against the local server
(``TEST_POSTGRES_URL``, default 127.0.0.1:5432, database ``test``) in a schema
of its own, dropped afterwards; without a server it skips locally and fails
under CI=true, like the broker tests.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import in_ci
from workers.delivery import idempotency
from workers.delivery.idempotency import CompletionStore, PostgresStore, SQLiteStore, open_store

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def close(store: CompletionStore) -> None:
    """Close this thread's connection of ``store`` (the stores have no close of their own)."""
    store._connection().close()  # type: ignore[attr-defined]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(str(tmp_path / "state" / "completed.sqlite3"))
    yield store
    close(store)


@pytest.fixture
def postgres_store() -> Iterator[PostgresStore]:
    """A PostgresStore whose table lives in a schema of its own, dropped afterwards."""
    try:
        import psycopg  # the 'postgres' extra; the dev extra installs it
    except ImportError as exc:
        if in_ci():
            pytest.fail(f"CI=true and PostgreSQL's driver is required: {exc}")
        pytest.skip(f"psycopg is not installed: {exc}")
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if in_ci():
            pytest.fail(f"CI=true and PostgreSQL is required: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    schema = f"unit_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in POSTGRES_URL else "?"
        store = PostgresStore(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
        try:
            yield store
        finally:
            close(store)
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> CompletionStore:
    """Each store kind in turn."""
    return request.getfixturevalue(f"{request.param}_store")


def placeholder(store: CompletionStore) -> str:
    return "?" if isinstance(store, SQLiteStore) else "%s"


def side_effects(store: CompletionStore) -> list[str]:
    with store.transaction() as db:
        return [row[0] for row in db.execute("SELECT order_id FROM charges ORDER BY order_id").fetchall()]


@pytest.fixture
def charges(store: CompletionStore) -> CompletionStore:
    """``store`` with a ``charges`` table for a task's side effects."""
    with store.transaction() as db:
        db.execute("CREATE TABLE charges (order_id TEXT PRIMARY KEY)")
    return store


def test_an_id_is_completed_only_once_it_was_marked(store: CompletionStore) -> None:
    """A new id is not completed; once marked it is; marking it again changes nothing."""
    assert store.is_completed("t-1") is False
    store.mark_completed("t-1", "tests.charge")
    store.mark_completed("t-1", "tests.charge")
    assert store.is_completed("t-1") is True
    assert store.is_completed("t-2") is False


def test_side_effects_and_the_completion_mark_commit_together(charges: CompletionStore) -> None:
    """Given a transaction that writes a side effect and marks the task completed,
    after it commits both are there."""
    with charges.transaction() as db:
        db.execute(f"INSERT INTO charges VALUES ({placeholder(charges)})", ("o-1",))
        charges.mark_completed_in(db, "t-1", "tests.charge")

    assert side_effects(charges) == ["o-1"]
    assert charges.is_completed("t-1") is True


def test_a_second_transaction_for_a_completed_id_learns_it_did_not_mark_it(charges: CompletionStore) -> None:
    """Given two copies of one message whose transactions run one after the other (the
    store serializes them), the first marks the id, the second is told it did not: the
    task base then rolls the second back, so the side effect exists once."""
    with charges.transaction() as db:
        db.execute(f"INSERT INTO charges VALUES ({placeholder(charges)})", ("o-1",))
        assert charges.mark_completed_in(db, "t-1", "tests.charge") is True
    with charges.transaction() as db:
        assert charges.mark_completed_in(db, "t-1", "tests.charge") is False


def test_a_transaction_that_raises_rolls_back_side_effects_and_the_completion_mark(
    charges: CompletionStore,
) -> None:
    """Given a transaction that raises after writing both, neither is kept, and the
    error reaches the caller: a redelivery runs the task again."""
    with pytest.raises(RuntimeError, match="crash before commit"):
        with charges.transaction() as db:
            db.execute(f"INSERT INTO charges VALUES ({placeholder(charges)})", ("o-1",))
            charges.mark_completed_in(db, "t-1", "tests.charge")
            raise RuntimeError("crash before commit")

    assert side_effects(charges) == []
    assert charges.is_completed("t-1") is False


def test_forget_before_removes_only_completions_older_than_the_cutoff(
    store: CompletionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given completions recorded at t=100 and t=200, forgetting before t=150
    removes the first only and says how many it removed."""
    clock = iter([100.0, 200.0])
    monkeypatch.setattr(idempotency.time, "time", lambda: next(clock))
    store.mark_completed("old", "tests.charge")
    store.mark_completed("new", "tests.charge")
    monkeypatch.undo()

    assert store.forget_before(150.0) == 1
    assert (store.is_completed("old"), store.is_completed("new")) == (False, True)
    assert store.forget_before(150.0) == 0


def test_a_completion_is_seen_by_another_connection_to_the_same_database(tmp_path: Path) -> None:
    """Given two stores on one SQLite file (two worker processes on one host), a
    completion marked by one is seen by the other."""
    path = str(tmp_path / "shared.sqlite3")
    first, second = SQLiteStore(path), SQLiteStore(path)
    try:
        first.mark_completed("t-1", "tests.charge")
        assert second.is_completed("t-1") is True
    finally:
        close(first)
        close(second)


# -- one store per process and URL --------------------------------------------------


@pytest.fixture
def no_open_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[Any, CompletionStore]]:
    """open_store's cache, emptied for this test; the stores it opened are closed after."""
    opened: dict[Any, CompletionStore] = {}
    monkeypatch.setattr(idempotency, "_stores", opened)
    yield opened
    for store in opened.values():
        if isinstance(store, SQLiteStore):
            close(store)


def test_open_store_gives_one_store_per_url_in_a_process(tmp_path: Path, no_open_stores: dict) -> None:
    """The same URL gives the same store; another URL another store."""
    url = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    first = open_store(url)

    assert open_store(url) is first
    assert open_store(f"sqlite:///{tmp_path / 'b.sqlite3'}") is not first
    assert isinstance(first, SQLiteStore) and first.path == str(tmp_path / "a.sqlite3")


def test_a_forked_process_opens_its_own_store(tmp_path: Path, no_open_stores: dict) -> None:
    """Given a store opened before a fork (as in prefork's parent), the child gets a
    new store of its own for the same URL, which sees what the parent recorded."""
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    parent = open_store(url)
    parent.mark_completed("t-1", "tests.charge")

    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        try:
            child = open_store(url)
            os._exit(0 if child is not parent and child.is_completed("t-1") else 1)
        except BaseException:  # noqa: BLE001 - any failure in the child is a failed check
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        pytest.param("sqlite:///state.sqlite3", SQLiteStore, "state.sqlite3", id="sqlite file"),
        pytest.param(
            "sqlite:///run/state.sqlite3", SQLiteStore, "run/state.sqlite3", id="sqlite file in a folder"
        ),
        pytest.param("sqlite:///", SQLiteStore, ":memory:", id="sqlite without a path is in memory"),
        pytest.param("postgresql://db/platform", PostgresStore, "postgresql://db/platform", id="postgresql"),
        pytest.param("postgres://db/platform", PostgresStore, "postgres://db/platform", id="postgres alias"),
    ],
)
def test_the_url_scheme_picks_the_store(
    url: str, kind: type, where: str, tmp_path: Path, no_open_stores: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite:/// URLs name a SQLite file relative to the working directory (only its
    folder is created until first use); postgresql:// and postgres:// connect lazily."""
    monkeypatch.chdir(tmp_path)
    store = open_store(url)
    assert isinstance(store, kind)
    assert (store.path if isinstance(store, SQLiteStore) else store.url) == where
    no_open_stores.clear()  # never connected: nothing to close


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("mysql://db/platform", id="another database"),
        pytest.param("sqlite://state.sqlite3", id="sqlite with two slashes"),
        pytest.param("/var/lib/state.sqlite3", id="a bare path"),
        pytest.param("", id="empty"),
    ],
)
def test_a_url_naming_no_supported_database_is_a_value_error(url: str, no_open_stores: dict) -> None:
    """open_store refuses URLs it can't serve, naming the URL and what it accepts."""
    with pytest.raises(ValueError, match=r"unsupported state store URL .* \(sqlite:/// or postgresql://\)"):
        open_store(url)
    assert no_open_stores == {}


def test_the_sqlite_store_writes_in_wal_mode_and_creates_its_folder(tmp_path: Path) -> None:
    """A store on a path whose folder does not exist creates it, and uses WAL (so
    several worker processes on one host can write)."""
    store = SQLiteStore(str(tmp_path / "new" / "folder" / "state.sqlite3"))
    try:
        assert (tmp_path / "new" / "folder").is_dir()
        with store.transaction() as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        close(store)


def test_completion_times_are_unix_times(store: CompletionStore) -> None:
    """A completion is stamped with the time it was recorded (what forget_before compares)."""
    before = time.time()
    store.mark_completed("t-1", "tests.charge")
    assert store.forget_before(before - 60) == 0
    assert store.forget_before(time.time() + 60) == 1


# -- recorded return values -------------------------------------------------------


def test_a_completion_keeps_its_return_value_as_celery_would_serialize_it(store: CompletionStore) -> None:
    """Given values of every JSON kind (and a date, as kombu's JSON carries it),
    each comes back as it was; a value with no JSON form is recorded as unknown."""
    from datetime import UTC, datetime

    from workers.delivery.idempotency import encode_result

    values = {
        "none": None,
        "dict": {"answer": 42, "items": [1, "a"]},
        "when": datetime(2026, 12, 1, tzinfo=UTC),
    }
    for task_id, value in values.items():
        store.mark_completed(task_id, "tests.charge", encode_result(value))
    store.mark_completed("opaque", "tests.charge", encode_result(object()))

    for task_id, value in values.items():
        completion = store.completion(task_id)
        assert completion is not None and (completion.result_known, completion.result) == (True, value)
    assert store.completion("opaque") == idempotency.Completion(result_known=False)
    assert store.completion("never") is None


def test_a_value_added_after_a_transaction_marked_the_task_completed(charges: CompletionStore) -> None:
    """Given a task that marked itself completed inside its transaction, the value
    is unknown until the body returns and it is recorded."""
    with charges.transaction() as db:
        charges.mark_completed_in(db, "t-1", "tests.charge")
    assert charges.completion("t-1") == idempotency.Completion(result_known=False)
    charges.record_result("t-1", '{"charged": true}')
    assert charges.completion("t-1") == idempotency.Completion(result_known=True, result={"charged": True})


def test_a_store_made_before_values_were_recorded_gets_the_column_and_keeps_its_ids(tmp_path: Path) -> None:
    """Given a SQLite file with the old three-column table and a completed id,
    opening it adds the column: the old id is still completed (value unknown)."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE completed_tasks (task_id TEXT PRIMARY KEY, task_name TEXT NOT NULL, "
                    "completed_at DOUBLE PRECISION NOT NULL)")  # fmt: skip
        old.execute("INSERT INTO completed_tasks VALUES ('old', 'tests.charge', 1.0)")
    old.close()
    store = SQLiteStore(str(path))
    try:
        assert store.completion("old") == idempotency.Completion(result_known=False)
        store.mark_completed("new", "tests.charge", "3")
        assert store.completion("new") == idempotency.Completion(result_known=True, result=3)
    finally:
        close(store)
