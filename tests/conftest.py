"""Fixtures: a fresh vhost per test on a real RabbitMQ, worker processes.

The ``broker`` marker means one thing everywhere: the test needs a real
RabbitMQ. A marked test is skipped when none answers, and fails under
``CI=true`` (:func:`require_broker`); a test that reaches RabbitMQ through the
``vhost`` fixture (directly, or through ``client``, ``start_worker``,
``platform_env``...) and is not marked fails, so ``-m "not broker"`` selects
exactly the tests that run without one. Broker test files mark themselves
with a module-level ``pytestmark``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Vhost, broker_problem, in_ci
from tests.support.worker import WorkerProcess, platform_environment, reap_stopping

_problem: list[str | None] = []


def require_broker() -> None:
    """Fail under CI, skip locally, when RabbitMQ is not usable."""
    if not _problem:
        _problem.append(broker_problem())
    if _problem[0]:
        if in_ci():
            pytest.fail(f"CI=true and the broker is required: {_problem[0]}")
        pytest.skip(_problem[0])


#: The marker of tests that need a real RabbitMQ.
BROKER_MARKER = "broker"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Keep the broker marker honest: marked tests need the broker, users of it are marked."""
    marked = item.get_closest_marker(BROKER_MARKER) is not None
    if uses_vhost_fixture(item) and not marked:
        pytest.fail(
            f"{item.nodeid} uses a real RabbitMQ (the vhost fixture) but is not marked: "
            f"add `pytestmark = pytest.mark.{BROKER_MARKER}` to its module",
            pytrace=False,
        )
    if marked:
        require_broker()


def uses_vhost_fixture(item: pytest.Item) -> bool:
    """Whether ``item`` needs the ``vhost`` fixture (a test parameter of that name is not it)."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "vhost" in callspec.params:
        return False
    return "vhost" in getattr(item, "fixturenames", ())


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    require_broker()
    host = Vhost.create()
    yield host
    host.delete()


@pytest.fixture
def platform_env(vhost: Vhost, tmp_path: Path) -> dict[str, str]:
    """Environment for platform processes on this test's vhost."""
    return platform_environment(vhost.url, tmp_path)


#: Set (``make test-layout``): ``start_worker()`` with its defaults starts the default
#: layout's worker group (2 solo processes) instead of ``-P prefork -c 2``.
LAYOUT_SWITCH = "TEST_WORKER_LAYOUT"


@pytest.fixture
def start_worker(platform_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start workers with ``start_worker(queues=..., **env_overrides)``; all stopped after."""
    started: list[WorkerProcess] = []
    reap_stopping()  # earlier tests' workers that finished shutting down meanwhile

    def start(
        queues: str = "orders", concurrency: int = 2, pool: str = "prefork", **env: str
    ) -> WorkerProcess:
        if os.environ.get(LAYOUT_SWITCH) and (pool, concurrency) == ("prefork", 2) and "," not in queues:
            # `make test-layout`: the same tests against the default layout's worker group.
            worker = WorkerProcess.group({**platform_env, **env}, tmp_path, queues)
        else:
            worker = WorkerProcess({**platform_env, **env}, tmp_path, queues, concurrency, pool)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop(wait=False)  # the shutdown goes on while the next test runs


@pytest.fixture(scope="session", autouse=True)
def workers_stopped_at_the_end() -> Iterator[None]:
    """Every worker a test started has exited (or was killed) before the session ends."""
    yield
    reap_stopping(block=True)


@pytest.fixture
def client(platform_env: dict[str, str]) -> Iterator:
    """A Celery app in the test process, publishing to this test's vhost."""
    from config.app import create_app
    from config.settings import load_settings

    app = create_app(load_settings(platform_env), main="test-client")
    yield app
    app.close()
