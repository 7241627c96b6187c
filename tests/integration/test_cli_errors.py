"""Errors at the command line: one clear line on stderr, a documented exit code, never a traceback.

Each case runs the real command in a subprocess, as an operator would: Celery's
own ``celery call`` and ``celery worker`` on the platform's app, the
platform's ``pubsub`` group, and ``make up``. The broker is "down" by pointing
at a port nothing listens on, with a password that must never be printed.
None of these needs a running RabbitMQ.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.support.cli import run_cli
from tests.support.worker import ROOT, platform_environment

#: The password of the unreachable broker's URL: it must never be printed.
SECRET = "s3cret-pw"
#: Celery warns (several lines) when a worker runs as root, as tests may here; that is not our error.
ROOT_WARNING = "ignore:You're running the worker with superuser privileges:Warning"


@pytest.fixture
def down_env(tmp_path: Path) -> dict[str, str]:
    """The platform environment with a broker URL on which nothing answers."""
    env = platform_environment(f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}//", tmp_path)
    env["PYTHONWARNINGS"] = ROOT_WARNING
    env["PLATFORM_PUBLISH_TIMEOUT"] = "1"
    return env


def the_one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single non-empty stderr line of ``result`` (fails if there are more, or a traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_celery_call_with_the_broker_down_says_so_in_one_line_and_exits_3(down_env: dict[str, str]):
    """`celery -A config call` (Celery's own command) with nothing listening: exit 3,
    one line naming the masked broker URL."""
    result = run_cli(down_env, "call", "tests.ok", "--queue", "orders")
    line = the_one_line(result)
    assert result.returncode == 3, result.stderr
    assert line.startswith("error: ") and "guest:**@127.0.0.1" in line


def test_traceback_on_any_celery_command_keeps_pythons_traceback_for_debugging(down_env: dict[str, str]):
    """`celery -A config call ... --traceback`: the full traceback, as stock Celery prints it."""
    result = run_cli(down_env, "call", "tests.ok", "--queue", "orders", "--traceback")
    assert result.returncode == 1, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "OperationalError" in result.stderr.splitlines()[-1]


def test_pubsub_backfill_with_the_broker_down_says_so_in_one_line_and_exits_3(down_env: dict[str, str]):
    """`pubsub backfill email --from-start` with nothing listening: exit 3, one line."""
    env = {**down_env, "PLATFORM_SUBSCRIPTIONS_FILE": str(ROOT / "config" / "subscriptions.toml")}
    result = run_cli(env, "pubsub", "backfill", "email", "--from-start")
    line = the_one_line(result)
    assert result.returncode == 3, result.stderr
    assert "guest:**@127.0.0.1" in line


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("call", "tests.ok", "--queue", "nosuch"), id="celery call --queue nosuch"),
        pytest.param(("worker", "-Q", "orders,nosuch", "--without-mingle"), id="celery worker -Q nosuch"),
    ],
)
def test_an_unknown_queue_is_one_line_naming_it_and_the_known_queues_exit_4(
    down_env: dict[str, str], command: tuple[str, ...]
):
    """A queue that is not one of the platform's (Celery's QueueNotFound, or the
    worker's queue subset): exit 4, one line naming it, the platform's queues and
    the setting to change."""
    result = run_cli(down_env, *command, timeout=60)
    line = the_one_line(result)
    assert result.returncode == 4, result.stderr
    assert "'nosuch'" in line and "orders, payments, default" in line and "PLATFORM_QUEUES" in line


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        pytest.param(
            "PLATFORM_TASK_MODULES",
            "tests.support.tasks,tests.support.taskz",
            "PLATFORM_TASK_MODULES: no module named 'tests.support.taskz'",
            id="typo'd task module",
        ),
        pytest.param(
            "CELERY_RESULT_BACKEND",
            f"nosuch://user:{SECRET}@somewhere/0",
            "CELERY_RESULT_BACKEND: 'nosuch' is not a result backend",
            id="unknown result backend",
        ),
    ],
)
@pytest.mark.parametrize("command", [("worker", "-Q", "orders"), ("dlq", "list")], ids=["worker", "dlq list"])
def test_a_bad_setting_stops_any_command_with_one_line_naming_the_variable_exit_2(
    down_env: dict[str, str], variable: str, value: str, expected: str, command: tuple[str, ...]
):
    """A typo'd PLATFORM_TASK_MODULES or an unknown CELERY_RESULT_BACKEND stops a
    worker and every CLI at start: exit 2, one line naming the variable and the
    module or backend (never the backend URL's password)."""
    result = run_cli({**down_env, variable: value}, *command, timeout=60)
    line = the_one_line(result)
    assert result.returncode == 2, result.stderr
    assert expected in line, line


def test_make_up_with_a_bad_setting_prints_that_line_and_nothing_misleading(tmp_path: Path):
    """`PLATFORM_RETRY_BASE=abc make up`: the line naming the variable, then only
    make's own note that the target failed; nothing about users or passwords."""
    env = platform_environment(f"amqp://guest:{SECRET}@127.0.0.1:{free_port()}//", tmp_path)
    env.update({"PLATFORM_RETRY_BASE": "abc", "PLATFORM_RUN_DIR": str(tmp_path / "run")})
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(name, None)
    result = subprocess.run(
        ["make", "up"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("make: ***")]
    assert ours == ["configuration error: PLATFORM_RETRY_BASE must be a number, got 'abc'"], result.stderr
    assert "password" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_cli_error_report_is_not_installed_for_an_app_imported_outside_the_celery_command(
    tmp_path: Path,
):
    """Importing the platform's app in an ordinary Python process (a web app, a
    script) leaves that process's error reporting alone."""
    env = platform_environment("amqp://guest:guest@127.0.0.1:5672//", tmp_path)
    probe = "import sys; before = sys.excepthook; import config; print(sys.excepthook is before)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
