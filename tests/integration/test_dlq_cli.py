"""``celery -A config dlq ...`` end to end: real RabbitMQ, real CLI processes, real workers.

Each test runs on its own vhost. Dead letters are either produced by a real
worker (tests.permanent, tests.unknown) or seeded with the headers a worker
writes, for a task that now succeeds (tests.ok), as if its cause was fixed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.ledger import events
from tests.support.messages import celery_message, header
from tests.support.wait import wait_for
from tests.support.worker import ROOT
from workers.ops.dlq import AUDIT_FILE, group_id

pytestmark = pytest.mark.broker

#: Seconds a paced replay may take beyond (n - 1) / rate: the first get, the
#: confirms, and a busy 2-core machine.
RATE_TOLERANCE = 1.5


@pytest.fixture
def env(platform_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The platform environment with the run folder (audit file) under tmp_path."""
    return {**platform_env, "PLATFORM_RUN_DIR": str(tmp_path / "run")}


@pytest.fixture
def declared(env: dict[str, str]) -> dict[str, str]:
    """The topology declared on this test's vhost (as an operator would)."""
    result = run_cli(env, "topology", "declare")
    assert result.returncode == 0, result.stderr
    return env


def dlq_json(env: dict[str, str], *args: str) -> Any:
    result = run_cli(env, "dlq", *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def seed(
    vhost,
    queue: str = "orders",
    task: str = "tests.ok",
    error_class: str = "permanent",
    error_type: str = "ValueError",
    failed_at: datetime | None = None,
    traceback: str = "Traceback (most recent call last):\n  ValueError: bad input\n",
    body: bytes | None = None,
) -> str:
    """Put one dead letter into ``<queue>.dlq`` as a worker would; returns its task id."""
    payload, headers = celery_message(task, task_id=str(uuid.uuid4()))
    stamp = (failed_at or datetime.now(UTC)).isoformat(timespec="milliseconds")
    headers.update(
        {
            "x-original-queue": queue,
            "x-original-exchange": "platform.tasks",
            "x-original-routing-key": queue,
            "x-task-name": task,
            "x-task-id": headers["id"],
            "x-error-class": error_class,
            "x-error-type": error_type,
            "x-error-message": f"{error_type} in {task}",
            "x-error-traceback": traceback,
            "x-retry-count": 3,
            "retries": 3,
            "x-first-failed-at": stamp,
            "x-last-failed-at": stamp,
            "x-worker": "w1@test",
        }
    )
    vhost.publish(
        f"{queue}.dlq", body if body is not None else payload, headers=headers, correlation_id=headers["id"]
    )
    return headers["id"]


def ids_in(vhost, queue: str) -> list[str]:
    """Task ids of every message in ``queue``, head first (consumes them)."""
    return [header(message, "id") for message in vhost.take_all(queue)]


def audit_records(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["PLATFORM_RUN_DIR"]) / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ----------------------------------------------------------------------- list, show


def test_list_shows_every_queue_with_its_dlq_depth_oldest_age_and_retry_depths(vhost, declared):
    """Given 3 dead letters in orders.dlq (the oldest 2 h old) and 1 in payments.dlq,
    `dlq list` reports those depths, the oldest age within a minute, and every
    retry tier at 0; the table names the queues too."""
    seed(vhost, failed_at=datetime.now(UTC) - timedelta(hours=2))
    seed(vhost)
    seed(vhost)
    seed(vhost, queue="payments")
    rows = {row["queue"]: row for row in dlq_json(declared, "list")}
    assert rows["orders"]["dead_letters"] == 3
    assert rows["payments"]["dead_letters"] == 1
    assert 7200 - 60 < rows["orders"]["oldest_age_seconds"] < 7200 + 60
    assert rows["orders"]["retry_queues"] == {f"orders.retry.{n}": 0 for n in range(1, 6)}
    table = run_cli(declared, "dlq", "list")
    assert table.returncode == 0
    assert "orders" in table.stdout and "2h" in table.stdout


def test_show_lists_headers_and_a_bounded_traceback_and_leaves_the_dlq_exactly_as_it_was(vhost, declared):
    """Given 5 dead letters (one with a non-UTF-8 body and a 5,000-character
    traceback), `dlq show` twice lists them head first with their headers and at
    most --traceback-chars of traceback; afterwards the DLQ holds the same 5, in
    the same order, bodies byte for byte, nothing unacked, nothing consumed."""
    ids = [seed(vhost) for _ in range(3)]
    ids.append(seed(vhost, traceback="x" * 4990 + "\nBoom!\n", body=b"\xff\xfe not utf-8"))
    ids.append(seed(vhost))
    for _ in range(2):
        records = dlq_json(declared, "show", "orders", "--traceback-chars", "100")
    assert [record["task_id"] for record in records] == ids
    assert records[0]["headers"]["x-error-class"] == "permanent"
    assert records[0]["headers"]["x-original-queue"] == "orders"
    assert records[3]["body_encoding"] == "base64"
    assert len(records[3]["headers"]["x-error-traceback"]) == 100
    assert records[3]["headers"]["x-error-traceback"].endswith("Boom!\n")
    table = run_cli(declared, "dlq", "show", "orders")
    assert table.returncode == 0 and ids[0] in table.stdout and "x-error-type: ValueError" in table.stdout

    info = vhost.queue_info("orders.dlq")
    assert vhost.depth("orders.dlq") == 5
    assert info.get("messages_unacknowledged", 0) == 0
    messages = vhost.take_all("orders.dlq")
    assert [header(message, "id") for message in messages] == ids
    assert messages[3].body == b"\xff\xfe not utf-8"
    assert all(header(message, "x-replay-count") is None for message in messages)


# ----------------------------------------------------------------------------- stats


def test_stats_groups_real_dead_letters_by_task_and_error_type(vhost, declared, client, start_worker):
    """Given a worker that dead-letters 3 tests.permanent and 2 tests.unknown tasks,
    `dlq stats` counts 5, in two groups (3 and 2) named by task and error type,
    all 5 in the current hour of the trend."""
    start_worker()
    for _ in range(3):
        client.send_task("tests.permanent", queue="orders")
    for _ in range(2):
        client.send_task("tests.unknown", queue="orders")
    wait_for(lambda: vhost.depth("orders.dlq") == 5, timeout=60, message="5 dead letters")
    stats = dlq_json(declared, "stats", "orders")
    assert stats["count"] == 5
    assert stats["inflow_last_hour"] == 5
    groups = [(g["task_name"], g["error_type"], g["error_class"], g["count"]) for g in stats["groups"]]
    assert groups == [
        ("tests.permanent", "workers.errors.PermanentError", "permanent", 3),
        ("tests.unknown", "RuntimeError", "unknown", 2),
    ]
    assert stats["groups"][0]["id"] == group_id("tests.permanent", "workers.errors.PermanentError")
    assert stats["trend"][-1]["count"] == 5 and len(stats["trend"]) == 24
    assert 0 <= stats["oldest_age_seconds"] < 120
    table = run_cli(declared, "dlq", "stats", "orders")
    assert "tests.permanent" in table.stdout and "RuntimeError" in table.stdout


# ---------------------------------------------------------------------------- replay


def test_replay_by_error_class_moves_only_matching_letters_keeps_their_ids_and_the_rest_in_order(
    vhost, declared
):
    """Given transient and permanent dead letters interleaved, replaying
    --error-class transient puts exactly the transient ones on `orders` (same
    ids and bodies, x-replay-count 1, a fresh retry budget) and leaves the
    permanent ones in the DLQ in their order; the audit file says who, what, when."""
    kinds = ["transient", "permanent", "transient", "permanent", "transient"]
    ids = [
        seed(vhost, error_class=kind, error_type="TimeoutError" if kind == "transient" else "ValueError")
        for kind in kinds
    ]
    result = run_cli(declared, "dlq", "replay", "orders", "--error-class", "transient")
    assert result.returncode == 0, result.stderr
    assert "replayed 3 of 3 matching (5 scanned)" in result.stdout

    replayed = vhost.take_all("orders")
    assert [header(m, "id") for m in replayed] == [ids[0], ids[2], ids[4]]
    assert all(header(m, "x-replay-count") == 1 for m in replayed)
    assert all(header(m, "x-retry-count") == 0 and header(m, "retries") == 0 for m in replayed)
    assert all(m.properties.get("correlation_id") == header(m, "id") for m in replayed)
    assert json.loads(replayed[0].body)[0] == []
    assert ids_in(vhost, "orders.dlq") == [ids[1], ids[3]]

    [record] = audit_records(declared)
    assert record["action"] == "replay" and record["queue"] == "orders.dlq"
    assert record["who"].startswith(f"{os.environ.get('USER') or ''}") and "@" in record["who"]
    assert record["filters"] == {"error_classes": ["transient"]}
    assert record["task_ids"] == [ids[0], ids[2], ids[4]]
    datetime.fromisoformat(record["at"])


def test_replay_by_id_by_group_by_task_and_by_age_selects_exactly_those(vhost, declared):
    """Each filter takes only its letters: --id one letter, --group one error
    group, --task one task, --older-than the letters dead-lettered before then."""
    old = seed(vhost, failed_at=datetime.now(UTC) - timedelta(hours=3))
    by_id = seed(vhost)
    grouped = seed(vhost, task="tests.flaky", error_type="KeyError")
    other_task = seed(vhost, task="tests.slow", error_type="ValueError")
    keep = seed(vhost)

    def replay(*args: str) -> list[str]:
        result = run_cli(declared, "dlq", "replay", "orders", *args)
        assert result.returncode == 0, result.stderr
        return ids_in(vhost, "orders")

    assert replay("--older-than", "2h") == [old]
    assert replay("--id", by_id) == [by_id]
    assert replay("--group", group_id("tests.flaky", "KeyError")) == [grouped]
    assert replay("--task", "tests.slow") == [other_task]
    assert ids_in(vhost, "orders.dlq") == [keep]


def test_a_dry_run_lists_what_would_be_replayed_and_changes_nothing(vhost, declared):
    """A dry run reports the matching letters and their groups, but nothing moves
    and nothing is written to the audit file."""
    ids = [seed(vhost, error_class="transient", error_type="TimeoutError") for _ in range(3)]
    seed(vhost)
    result = dlq_json(declared, "replay", "orders", "--error-class", "transient", "--dry-run")
    assert result["matched"] == 3 and result["replayed"] == 0 and result["task_ids"] == ids
    assert result["groups"] == {group_id("tests.ok", "TimeoutError"): 3}
    text = run_cli(declared, "dlq", "replay", "orders", "--dry-run")
    assert "dry run: 4 of 4" in text.stdout
    assert vhost.depth("orders") == 0
    assert vhost.depth("orders.dlq") == 4
    assert audit_records(declared) == []


def test_replayed_letters_go_back_to_the_work_queue_and_complete_on_a_worker(
    vhost, declared, start_worker, tmp_path
):
    """Given 10 dead letters of a task whose cause is fixed, replay with a worker
    running: all 10 complete, each once, and the DLQ is empty."""
    ids = [seed(vhost) for _ in range(10)]
    start_worker()
    result = run_cli(declared, "dlq", "replay", "orders")
    assert result.returncode == 0, result.stderr
    ledger = tmp_path / "ledger.txt"
    wait_for(lambda: len(events(ledger, "done")) >= 10, timeout=60, message="10 replayed tasks to complete")
    assert sorted(e.task_id for e in events(ledger, "done")) == sorted(ids)
    assert vhost.depth("orders.dlq") == 0


def test_replay_honours_the_rate_limit_within_the_stated_tolerance(vhost, declared):
    """Replaying 20 letters at --rate 10 takes at least 1.9 s ((n - 1) / rate)
    and at most RATE_TOLERANCE more, as measured by the replay itself."""
    for _ in range(20):
        seed(vhost)
    result = dlq_json(declared, "replay", "orders", "--rate", "10")
    assert result["replayed"] == 20
    assert 1.9 <= result["elapsed"] <= 1.9 + RATE_TOLERANCE, result["elapsed"]
    assert vhost.depth("orders") == 20


def test_replay_stops_by_itself_when_most_replayed_messages_fail_again(vhost, declared, start_worker):
    """Given 40 dead letters of a task that still fails permanently and a worker,
    a replay at 20/s with --max-refail-ratio 0.5 stops early with exit code 5;
    the letters not replayed stay in the DLQ, the re-failed ones come back to it,
    so all 40 end up in orders.dlq again."""
    ids = [seed(vhost, task="tests.permanent", error_type="workers.errors.PermanentError") for _ in range(40)]
    start_worker()
    result = run_cli(declared, "dlq", "replay", "orders", "--rate", "20", "--max-refail-ratio", "0.5")
    assert result.returncode == 5, result.stdout + result.stderr
    assert "replay stopped" in result.stderr and "Traceback" not in result.stderr
    [record] = audit_records(declared)
    assert record["stopped"] == "refailures"
    assert 6 <= record["replayed"] <= 30, record
    wait_for(lambda: vhost.depth("orders.dlq") == 40, timeout=30, message="all 40 back in the DLQ")
    back = vhost.take_all("orders.dlq")
    assert sorted(header(m, "id") for m in back) == sorted(ids)
    assert sum(1 for m in back if header(m, "x-replay-count") == 1) == record["replayed"]


def test_killing_the_replay_process_mid_replay_loses_nothing_and_duplicates_at_most_one(vhost, declared):
    """Given 30 dead letters replayed at 5/s, SIGKILL of the replay process after
    at least 5 have moved leaves every id either on `orders` or in the DLQ: at
    most one in both, none missing, and the DLQ's remaining letters in order."""
    ids = [seed(vhost) for _ in range(30)]
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "dlq", "replay", "orders", "--rate", "5"],
        cwd=ROOT,
        env=declared,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: vhost.depth("orders") >= 5, timeout=60, message="5 replayed messages")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    wait_for(
        lambda: (
            vhost.queue_info("orders.dlq").get("messages_unacknowledged", 0) == 0
            and vhost.depth("orders.dlq") + vhost.depth("orders") >= 30
        ),
        timeout=30,
        message="the broker to requeue the killed replay's letters",
    )
    on_work_queue = ids_in(vhost, "orders")
    in_dlq = ids_in(vhost, "orders.dlq")
    assert set(on_work_queue) | set(in_dlq) == set(ids), "nothing lost"
    assert len(on_work_queue) + len(in_dlq) <= 31, "at most one duplicate"
    assert 5 <= len(on_work_queue) < 30
    assert in_dlq == [i for i in ids if i in in_dlq], "the rest keep their order"


# ----------------------------------------------------------------------- purge, export


def test_purge_asks_first_and_export_writes_json_lines_with_base64_for_binary_bodies(
    vhost, declared, tmp_path
):
    """`purge` answered "n" deletes nothing (exit 1); `export` writes one JSON line
    per letter (binary body as base64) without consuming; `purge --yes` empties
    the DLQ and is audited."""
    text_id = seed(vhost)
    binary_id = seed(vhost, body=b"\x00\xff\x10")
    refused = run_cli(declared, "dlq", "purge", "orders", input="n\n")
    assert refused.returncode == 1 and vhost.depth("orders.dlq") == 2

    out = tmp_path / "export.jsonl"
    exported = run_cli(declared, "dlq", "export", "orders", "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["task_id"] for line in lines] == [text_id, binary_id]
    assert lines[0]["body_encoding"] == "utf-8" and json.loads(lines[0]["body"])[0] == []
    assert lines[1]["body_encoding"] == "base64" and lines[1]["body"] == "AP8Q"
    assert vhost.depth("orders.dlq") == 2

    purged = run_cli(declared, "dlq", "purge", "orders", "--yes")
    assert purged.returncode == 0 and "purged 2" in purged.stdout
    assert vhost.depth("orders.dlq") == 0
    assert [(r["action"], r["deleted"]) for r in audit_records(declared)] == [("purge", 2)]


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("show", "nope"), 4, "unknown queue 'nope'"),
        (("replay", "nope.dlq"), 4, "unknown queue 'nope.dlq'"),
        (("replay", "orders", "--older-than", "soon"), 2, "is not a duration"),
        (("replay", "orders", "--group", "zz"), 2, "is not a group id"),
        (("replay", "orders", "--error-class", "weird"), 2, "weird"),
        (("replay", "orders", "--rate", "0"), 2, "--rate"),
    ],
)
def test_bad_arguments_get_a_clear_message_and_a_non_zero_exit_never_a_traceback(
    vhost, declared, args: tuple[str, ...], code: int, says: str
):
    """Unknown queues exit 4, bad filter values exit 2, each with a message naming the problem."""
    result = run_cli(declared, "dlq", *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_broker_exits_3_with_the_url_and_no_traceback(env):
    """With nothing listening at the broker URL, `dlq list` exits 3 and names the broker."""
    result = run_cli({**env, "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}, "dlq", "list")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "broker unreachable" in result.stderr and "Traceback" not in result.stderr
