"""Fixtures of the chaos suite: a 3-node cluster per session, a vhost on it per test; short or long form.

``make test`` runs the short form (scenarios marked ``chaos_long`` are
deselected, the rest run with small loads); ``make chaos`` sets
``CHAOS_LONG=1`` for every scenario at full size. The cluster starts once per
session (about 25 s on an idle machine) and is torn down at the end; under
``CI=true`` a cluster that can't start fails the tests that need it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import in_ci
from tests.support.chaos_ledger import SUMMARIES
from tests.support.cluster import CLUSTER_PORT, ClusterVhost
from workers.ops.cluster import control
from workers.ops.cluster.layout import Layout
from workers.ops.cluster.nodes import ClusterError

#: True for ``make chaos``: every scenario, full size.
LONG = os.environ.get("CHAOS_LONG", "").lower() in {"1", "true", "yes"}


def sized(short: int, long: int) -> int:
    """A load for this run's form."""
    return long if LONG else short


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside ``make chaos``, leave out the scenarios marked ``chaos_long``."""
    if LONG:
        return
    kept, left_out = [], []
    for item in items:
        (left_out if item.get_closest_marker("chaos_long") else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per scenario's ledger."""
    if SUMMARIES:
        terminalreporter.section("chaos ledgers")
        for line in SUMMARIES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """A running 3-node cluster, torn down at the end of the session."""
    layout = Layout(Path(tmp_path_factory.mktemp("cluster")).resolve(), CLUSTER_PORT)
    try:
        control.up(layout, lambda line: None)
    except ClusterError as exc:
        control.down(layout, lambda line: None)
        if in_ci():
            pytest.fail(f"CI=true and the local cluster is required: {exc}")
        pytest.skip(f"the local cluster can't start here: {exc}")
    yield layout
    control.down(layout, lambda line: None)


@pytest.fixture
def whole_cluster(cluster: Layout) -> Iterator[Layout]:
    """The cluster, with every node running and clustered before and after the test."""
    restore(cluster)
    yield cluster
    restore(cluster)


def restore(layout: Layout) -> None:
    """Thaw and start whatever node a scenario left frozen or down, and wait for one cluster.

    A node frozen longer than the net tick time comes back partitioned (it
    never saw its peers go, they saw it go): it is restarted to rejoin.
    """
    from workers.ops.cluster.nodes import running_nodes, server_pid

    for node in layout.nodes:
        if server_pid(layout, node) is not None:
            control.thaw(layout, node)
    for node in layout.nodes:
        if server_pid(layout, node) is None:
            control.start(layout, node)
    try:
        control.await_formation(layout, timeout=20)
    except ClusterError:
        wanted = {node.name for node in layout.nodes}
        for node in layout.nodes:
            if len(running_nodes(layout, node)) < len(wanted):
                control.kill(layout, node)
                control.start(layout, node)
        control.await_formation(layout)


@pytest.fixture
def cluster_vhost(whole_cluster: Layout) -> Iterator[ClusterVhost]:
    """A fresh vhost on the cluster (left there: the cluster is removed at the end of the session,
    and deleting a vhost while a scenario keeps a node down would wait on that node)."""
    yield ClusterVhost.create(whole_cluster)


@pytest.fixture
def cluster_platform(cluster_vhost: ClusterVhost, tmp_path: Path) -> Iterator:
    """Start workers and a publishing app on this test's cluster vhost; all stopped after.

    ``start(first=node, **env)`` starts a worker whose failover list begins at
    ``node`` (``env`` overrides its settings); ``client`` is a Celery app
    publishing through the whole list; ``settings`` are the workers' settings.
    """
    from config.app import create_app
    from config.settings import load_settings
    from tests.support.chaos_run import CHAOS_TASKS
    from tests.support.worker import WorkerProcess, platform_environment

    env = platform_environment(cluster_vhost.url(), tmp_path, PLATFORM_TASK_MODULES=CHAOS_TASKS)
    started: list[WorkerProcess] = []
    apps = []

    class Platform:
        vhost = cluster_vhost
        ledger = tmp_path / "ledger.txt"
        state_db = tmp_path / "state.sqlite3"
        environment = env

        def declare_on(self, node: object) -> None:
            """Declare the topology through ``node``: every quorum queue's leader and every
            classic queue (the DLQs) start there (RabbitMQ places them client-local)."""
            from config.app import build_topology
            from workers.broker import declare_topology, kombu_connection

            url = cluster_vhost.url(node)  # type: ignore[arg-type]
            settings = load_settings({**env, "CELERY_BROKER_URL": url})
            with kombu_connection(url, settings.publish_timeout) as connection:
                declare_topology(connection, build_topology(settings))

        def start(self, first: object = None, concurrency: int = 2, **overrides: str) -> WorkerProcess:
            worker_env = {**env, "CELERY_BROKER_URL": cluster_vhost.url(first), **overrides}  # type: ignore[arg-type]
            worker = WorkerProcess(worker_env, tmp_path, "orders", concurrency)
            started.append(worker)
            return worker.start()

        def client(self, **overrides: str):
            app = create_app(load_settings({**env, **overrides}), main="chaos-client")
            apps.append(app)
            return app

    yield Platform()
    for worker in started:
        worker.stop(timeout=15, wait=False)  # reaped while the next test runs
    for app in apps:
        app.close()
