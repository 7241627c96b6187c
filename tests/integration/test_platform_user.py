"""``make broker``'s platform user: made once through the management API, then the platform runs as it.

The test makes a user and vhost of its own (``platform-test-<hex>``) on the
shared broker with the same command ``make broker`` runs
(``python -m workers.ops.platform_user``), runs a real worker and a task round
trip with the URLs it wrote, and deletes that user and vhost afterwards (the
``platform`` user of ``make broker`` is never touched here).
"""

from __future__ import annotations

import stat
import subprocess
import sys
import urllib.error
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import amqp
import pytest

from config.app import create_app
from config.settings import load_settings
from tests.support.broker import AMQP_HOST, MANAGEMENT_URL, management
from tests.support.ledger import events
from tests.support.wait import wait_for
from tests.support.worker import ROOT, WorkerProcess, platform_environment
from workers.ops.platform_user import ENV_FILE, PASSWORD_FILE

pytestmark = pytest.mark.broker


@pytest.fixture
def made(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A user and vhost name for this test; both deleted afterwards (only these)."""
    name = f"platform-test-{uuid.uuid4().hex[:8]}"
    yield name, name
    for path in (f"users/{name}", f"vhosts/{name}"):
        try:
            management("DELETE", path)
        except urllib.error.HTTPError:
            pass


def run_platform_user(tmp_path: Path, user: str, vhost: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = platform_environment(
        f"amqp://guest:guest@{AMQP_HOST}//",
        tmp_path,
        PLATFORM_RUN_DIR=str(tmp_path / "run"),
        PLATFORM_MANAGEMENT_URL=MANAGEMENT_URL.replace("://", "://guest:guest@", 1),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "workers.ops.platform_user", "--user", user, "--vhost", vhost],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def env_file_values(path: Path) -> dict[str, str]:
    return dict(line.partition("=")[::2] for line in path.read_text().splitlines() if "=" in line)


def test_the_platform_user_is_made_once_kept_private_and_a_worker_runs_tasks_as_it(
    made: tuple[str, str], tmp_path: Path
) -> None:
    """Given no such user, when make broker's step runs twice, then the second run changes nothing,
    the password is in files of mode 0600 and never printed, and a worker on its URL runs a task."""
    user, vhost = made

    first = run_platform_user(tmp_path, user, vhost)
    second = run_platform_user(tmp_path, user, vhost)

    assert first.returncode == 0, first.stderr
    assert f"created user {user!r}" in first.stdout and f"created vhost {vhost!r}" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout and "granted" not in second.stdout
    assert "is ready" in second.stdout
    run_dir = tmp_path / "run"
    password = (run_dir / PASSWORD_FILE).read_text().strip()
    assert len(password) >= 20
    for kept in (run_dir / PASSWORD_FILE, run_dir / ENV_FILE):
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600, kept
    for output in (first, second):
        assert password not in output.stdout + output.stderr
    info = management("GET", f"users/{user}")
    assert info["tags"] in (["management"], "management")
    assert management("GET", f"permissions/{vhost}/{user}")["configure"] == ".*"

    urls = env_file_values(run_dir / ENV_FILE)
    broker_url = urls["CELERY_BROKER_URL"]
    assert broker_url == f"amqp://{user}:{password}@{AMQP_HOST}/{urllib.parse.quote(vhost, safe='')}"
    env = platform_environment(broker_url, tmp_path, PLATFORM_MANAGEMENT_URL=urls["PLATFORM_MANAGEMENT_URL"])
    worker = WorkerProcess(env, tmp_path, "orders", concurrency=1, pool="solo").start()
    app = create_app(load_settings(env), main="platform-user-client")
    try:
        result = app.send_task("tests.ok", args=[7], queue="orders")
        wait_for(lambda: events(tmp_path / "ledger.txt", "done", result.id), message="the task to run")
    finally:
        app.close()
        worker.stop()
    connection = amqp.Connection(AMQP_HOST, userid=user, password=password, virtual_host=vhost)
    connection.connect()
    try:
        _, ready, _ = connection.channel().queue_declare("orders", passive=True)
    finally:
        connection.close()
    assert ready == 0


def test_a_user_that_exists_with_another_password_is_reported_not_reset(
    made: tuple[str, str], tmp_path: Path
) -> None:
    """Given the user made by another clone, when this one's password differs, then one line says so,
    exit 1, and the other clone's password still logs in."""
    user, vhost = made
    assert run_platform_user(tmp_path / "a", user, vhost).returncode == 0
    original = (tmp_path / "a" / "run" / PASSWORD_FILE).read_text().strip()

    other = run_platform_user(tmp_path / "b", user, vhost, PLATFORM_BROKER_PASSWORD="not-the-same-password")

    assert other.returncode == 1
    assert other.stderr.strip().count("\n") == 0
    assert "exists, and the password kept here does not log in" in other.stderr
    assert "not-the-same-password" not in other.stdout + other.stderr
    assert "Traceback" not in other.stderr
    connection = amqp.Connection(AMQP_HOST, userid=user, password=original, virtual_host=vhost)
    connection.connect()
    connection.close()
