"""End-to-end fixtures: make targets, Flower processes, a headless Chromium.

Everything runs as real processes against the test broker, each test on its
own vhost (the ``vhost`` fixture) with its own run folder and Flower port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support.broker import AMQP_HOST, AMQP_PASSWORD, AMQP_USER, MANAGEMENT_URL, Vhost, in_ci
from tests.support.wait import wait_for
from tests.support.worker import ROOT, platform_environment

#: Debian's Chromium; Playwright drives it (no `playwright install`).
CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a quiet headless Chromium in a container.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where screenshots go (results/ is ignored by git).
RESULTS = ROOT / "results" / "e2e"
#: Work queues of the demo services (the platform's default queues).
SERVICE_QUEUES = "orders,payments,inventory,email,analytics"
#: Their task modules.
SERVICE_MODULES = ",".join(f"tasks.{queue}" for queue in SERVICE_QUEUES.split(","))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def management_url() -> str:
    """The test broker's management API with the test credentials in it (``TEST_MANAGEMENT_URL``'s host and port)."""
    parsed = urllib.parse.urlparse(MANAGEMENT_URL)
    netloc = (
        f"{AMQP_USER}:{AMQP_PASSWORD}@{parsed.hostname or AMQP_HOST.partition(':')[0]}:{parsed.port or 15672}"
    )
    return parsed._replace(netloc=netloc).geturl()


def e2e_environment(vhost: Vhost, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Environment for platform processes and make targets on ``vhost``.

    The demo services' queues and tasks, a run folder and state file under
    ``tmp_path``, a free Flower port; nothing inherited from the caller's
    ``FLOWER_*`` or make variables.
    """
    env = platform_environment(vhost.url, tmp_path)
    for name in list(env):
        if name.startswith("FLOWER_") or name in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}:
            del env[name]
    env.update(
        {
            "PLATFORM_QUEUES": SERVICE_QUEUES,
            "PLATFORM_TASK_MODULES": SERVICE_MODULES,
            "PLATFORM_RUN_DIR": str(tmp_path / "run"),
            "PLATFORM_MANAGEMENT_URL": management_url(),
            "PLATFORM_CONCURRENCY": "1",
            "FLOWER_PORT": str(free_port()),
        }
    )
    env.update(overrides)
    return env


def service_settings(env: dict[str, str]) -> dict[str, str]:
    """The queue and task-module settings of ``env``, as ``start_worker`` overrides."""
    return {name: env[name] for name in ("PLATFORM_QUEUES", "PLATFORM_TASK_MODULES")}


def http_status(url: str, auth: tuple[str, str] | None = None) -> int | None:
    """The HTTP status of GET ``url``, or None when nothing answers."""
    request = urllib.request.Request(url)
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def run_make(*targets: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``make <targets>`` in the repository; output is captured as text."""
    return subprocess.run(
        ["make", *targets], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def processes_marked_with(run_dir: Path) -> list[psutil.Process]:
    """Live processes whose environment has ``PLATFORM_RUN_DIR=<run_dir>``."""
    mark = str(run_dir.resolve())
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get("PLATFORM_RUN_DIR") == mark:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def is_running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def make_cluster(vhost: Vhost, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment for ``make up``/``make down`` on this test's vhost.

    Afterwards, ``make down`` runs again, and anything still carrying the run
    folder's mark is killed by pid, so a failed test leaves nothing behind.
    """
    env = e2e_environment(vhost, tmp_path)
    yield env
    run_make("down", env=env, timeout=120)
    for process in processes_marked_with(Path(env["PLATFORM_RUN_DIR"])):
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


@dataclass
class Flower:
    """A running ``python -m workers.ops.flower``."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def start_flower(tmp_path: Path) -> Iterator[Callable[..., Flower]]:
    """Start Flower with ``start_flower(env)``; it answers /healthcheck on return."""
    started: list[Flower] = []

    def start(env: dict[str, str], timeout: float = 60) -> Flower:
        log_path = tmp_path / f"flower-{len(started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.ops.flower"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        flower = Flower(f"http://127.0.0.1:{env['FLOWER_PORT']}", process, log_path)
        started.append(flower)
        wait_for(
            lambda: http_status(f"{flower.url}/healthcheck") == 200 or process.poll() is not None,
            timeout,
            interval=0.2,
            message=lambda: f"Flower to answer at {flower.url}; log:\n{flower.log()[-3000:]}",
        )
        assert process.poll() is None, f"Flower exited ({process.returncode}):\n{flower.log()[-3000:]}"
        return flower

    yield start
    for flower in started:
        if flower.process.poll() is None:
            flower.process.terminate()
            try:
                flower.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(flower.process.pid, signal.SIGKILL)
                flower.process.wait(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's) driven by Playwright; skipped locally if missing, failed under CI."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing; install it with: apt-get update && apt-get install -y chromium"
        if in_ci():
            pytest.fail(f"CI=true and the browser is required: {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshot_dir(request: pytest.FixtureRequest) -> Path:
    """A folder under results/e2e/ for this test's screenshots."""
    folder = RESULTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
