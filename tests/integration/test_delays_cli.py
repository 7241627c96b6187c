"""``celery -A config delays ...`` end to end: real RabbitMQ, real CLI processes, no worker.

Each test runs on its own vhost. Delayed tasks are published by the platform's
own client (``send_task(..., countdown=...)``), so they wait in the delay
levels exactly as an app's would: 60 s is 6000 units, whose highest bit is
level 12 (it waits there 41 s before moving on); 300 s is 30000 units, level 14.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.app import platform_config
from config.topology import DELAY_LEVELS, delay_level
from tests.support.cli import run_cli
from tests.support.messages import header
from tests.support.wait import wait_for
from workers.broker import browse_messages, declare_topology, message_headers
from workers.ops.delays import raw_body
from workers.ops.dlq import AUDIT_FILE

pytestmark = pytest.mark.broker

#: The level a 60 s countdown waits in first (6000 units: 2**12 <= 6000 < 2**13).
LEVEL_60S = 12
#: The level a 300 s countdown waits in first (30000 units: 2**14 <= 30000 < 2**15).
LEVEL_300S = 14


@pytest.fixture
def env(platform_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The platform environment with the run folder (audit file) under tmp_path."""
    return {**platform_env, "PLATFORM_RUN_DIR": str(tmp_path / "run")}


@pytest.fixture
def delayed(client, vhost, env) -> dict[str, Any]:
    """Three delayed tasks: two for orders in 60 s, one for payments in 300 s (topology declared first)."""
    with client.connection_for_write() as connection:
        declare_topology(connection, platform_config(client).topology)
    published = datetime.now(UTC)
    orders = [client.send_task("tests.ok", countdown=60, queue="orders").id for _ in range(2)]
    payments = client.send_task("tests.ok", countdown=300, queue="payments").id
    wait_for(
        lambda: level_depths(vhost) == {LEVEL_60S: 2, LEVEL_300S: 1},
        timeout=10,
        message=lambda: f"the delayed tasks in their levels (have {level_depths(vhost)})",
    )
    return {"orders": orders, "payments": payments, "published": published}


def level_depths(vhost) -> dict[int, int]:
    """Non-empty delay levels and their depths (passive declares)."""
    depths = {level: vhost.depth(delay_level(level)) for level in range(DELAY_LEVELS)}
    return {level: depth for level, depth in depths.items() if depth}


def delays_json(env: dict[str, str], *args: str) -> Any:
    result = run_cli(env, "delays", *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def audit_records(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["PLATFORM_RUN_DIR"]) / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def level_message(vhost, level: int, task_id: str) -> tuple[bytes, dict[str, Any]]:
    """Body and headers of ``task_id``'s message in ``level`` (browsed, nothing consumed)."""
    with vhost.connect() as connection:
        for message in browse_messages(connection, delay_level(level)):
            if message_headers(message).get("id") == task_id:
                return raw_body(message), message_headers(message)
    raise AssertionError(f"{task_id} is not in {delay_level(level)}")


# ---------------------------------------------------------------------------- stats


def test_stats_counts_the_delayed_tasks_per_level_and_names_the_next_due_time(env, delayed):
    """Given two tasks delayed 60 s and one 300 s,
    when `delays stats` runs,
    then level 12 holds 2 and level 14 holds 1, no other level holds any, nothing is unroutable,
    and the next due time is the 60 s tasks' (about a minute after publishing)."""
    stats = delays_json(env, "stats")
    counts = {level["level"]: level["messages"] for level in stats["levels"]}
    assert counts == {level: {LEVEL_60S: 2, LEVEL_300S: 1}.get(level, 0) for level in range(DELAY_LEVELS)}
    assert stats["messages"] == 3
    assert stats["unroutable"] == {"queue": "platform.delayed.unroutable", "messages": 0}
    assert stats["missing"] == []
    next_due = datetime.fromisoformat(stats["next_due_at"])
    published = delayed["published"]
    assert published + timedelta(seconds=59) < next_due < published + timedelta(seconds=62)
    assert 0 < stats["next_due_in_seconds"] <= 60
    by_level = {level["level"]: level for level in stats["levels"]}
    assert datetime.fromisoformat(by_level[LEVEL_300S]["next_due_at"]) > published + timedelta(seconds=299)

    text = run_cli(env, "delays", "stats")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("3 delayed messages in platform.delay.0..27; next due ")
    rows = [line.split() for line in text.stdout.splitlines() if line.strip().startswith(("12 ", "14 "))]
    assert [(row[1], row[3]) for row in rows] == [("platform.delay.14", "1"), ("platform.delay.12", "2")]


# ----------------------------------------------------------------------------- peek


def test_peek_lists_the_delayed_tasks_soonest_first_and_consumes_nothing(env, vhost, delayed):
    """Given three delayed tasks,
    when `delays peek` runs (all, by task id, by queue),
    then it lists them soonest due first with target queue, task and level,
    and every level holds what it held before."""
    listed = delays_json(env, "peek")
    assert [(t["task_id"], t["target_queue"], t["task_name"], t["level"]) for t in listed] == [
        *((task_id, "orders", "tests.ok", LEVEL_60S) for task_id in delayed["orders"]),
        (delayed["payments"], "payments", "tests.ok", LEVEL_300S),
    ]
    assert all(t["routing_key"].endswith("." + t["target_queue"]) for t in listed)

    [one] = delays_json(env, "peek", "--task-id", delayed["orders"][1])
    assert one["task_id"] == delayed["orders"][1]
    assert [t["task_id"] for t in delays_json(env, "peek", "--queue", "payments")] == [delayed["payments"]]
    assert len(delays_json(env, "peek", "--limit", "1")) == 1

    text = run_cli(env, "delays", "peek")
    assert text.returncode == 0, text.stderr
    assert "showing 3 delayed tasks" in text.stdout
    assert all(task_id in text.stdout for task_id in [*delayed["orders"], delayed["payments"]])

    assert level_depths(vhost) == {LEVEL_60S: 2, LEVEL_300S: 1}
    assert vhost.depth("orders") == 0 and vhost.depth("payments") == 0


# --------------------------------------------------------------------------- cancel


def test_cancel_moves_exactly_that_task_to_its_dlq_byte_for_byte_and_audits_it(env, vhost, delayed):
    """Given three delayed tasks,
    when `delays cancel ID --yes` runs for one of the orders tasks,
    then orders.dlq holds exactly that message, body byte for byte, x-error-class cancelled and a message
    naming who and the level; the other two still wait in their levels; the audit log has the cancel;
    and `dlq replay` can run it after all."""
    cancelled, kept = delayed["orders"]
    body, headers = level_message(vhost, LEVEL_60S, cancelled)

    result = run_cli(env, "delays", "cancel", cancelled, "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"cancelled {cancelled} (tests.ok): platform.delay.12 -> orders.dlq" in result.stdout
    assert f"dlq replay orders --id {cancelled}" in result.stdout

    assert level_depths(vhost) == {LEVEL_60S: 1, LEVEL_300S: 1}
    assert [t["task_id"] for t in delays_json(env, "peek")] == [kept, delayed["payments"]]
    letters = vhost.take_all("orders.dlq")
    assert [header(letter, "id") for letter in letters] == [cancelled]
    [letter] = letters
    assert raw_body(letter) == body
    assert header(letter, "x-error-class") == "cancelled"
    assert header(letter, "x-error-type") == "DelayCancelled"
    assert header(letter, "x-original-queue") == "orders"
    assert header(letter, "x-task-id") == cancelled
    message = header(letter, "x-error-message")
    assert message.startswith("cancelled by ") and "while waiting in platform.delay.12" in message
    assert message.endswith(f"it was due at {headers['x-delay-due-at']}")
    assert vhost.depth("payments.dlq") == 0

    [record] = audit_records(env)
    assert {k: record[k] for k in ("action", "queue", "task_id", "delay_queue", "target_queue")} == {
        "action": "cancel",
        "queue": "orders.dlq",
        "task_id": cancelled,
        "delay_queue": "platform.delay.12",
        "target_queue": "orders",
    }
    assert record["who"] and record["at"]

    # Back in the DLQ (the take above consumed it), it replays to orders like any dead letter.
    vhost.publish("orders.dlq", raw_body(letter), headers=letter.properties["application_headers"])
    replay = run_cli(env, "dlq", "replay", "orders", "--id", cancelled, "--json")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    [replayed] = wait_for(lambda: vhost.take_all("orders"), timeout=10, message="the replayed task in orders")
    assert header(replayed, "id") == cancelled and raw_body(replayed) == body


def test_cancel_asks_first_and_a_no_changes_nothing(env, vhost, delayed):
    """Given a delayed task, when `delays cancel ID` is answered no, then it exits 1 and the task still waits."""
    task_id = delayed["payments"]
    result = run_cli(env, "delays", "cancel", task_id, input="n\n")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "waits in platform.delay.14 for payments" in result.stderr
    assert "aborted; nothing was cancelled" in result.stderr
    assert level_depths(vhost) == {LEVEL_60S: 2, LEVEL_300S: 1}
    assert vhost.depth("payments.dlq") == 0
    assert audit_records(env) == []


def test_an_unknown_task_id_exits_4_with_one_line(env, vhost, delayed):
    """Given delayed tasks, when `delays cancel` names a task id none of them has,
    then it exits 4 with one error line, and nothing moves."""
    result = run_cli(env, "delays", "cancel", "no-such-task", "--yes")
    assert result.returncode == 4, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: no delayed message with task id 'no-such-task' in platform.delay.0..27"
    ]
    assert level_depths(vhost) == {LEVEL_60S: 2, LEVEL_300S: 1}
    assert audit_records(env) == []


@pytest.mark.parametrize(
    "args",
    [("stats",), ("peek", "--limit", "5"), ("cancel", "some-task", "--yes")],
    ids=["stats", "peek", "cancel"],
)
def test_a_broker_that_is_down_exits_3_with_the_password_masked(env, args: tuple[str, ...]):
    """Given nothing listening at the broker URL, when a `delays` command runs,
    then it exits 3 with one line naming the broker, its password masked, and no traceback."""
    down = {**env, "CELERY_BROKER_URL": "amqp://guest:s3cret-pw@127.0.0.1:1//"}
    result = run_cli(down, "delays", *args)
    assert result.returncode == 3, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: broker unreachable at amqp://guest:**@127.0.0.1:1//")
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
