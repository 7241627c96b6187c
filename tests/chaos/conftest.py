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
    """Thaw and start whatever node a scenario left frozen or down, and wait for the cluster."""
    from workers.ops.cluster.nodes import server_pid

    for node in layout.nodes:
        if server_pid(layout, node) is not None:
            try:
                control.thaw(layout, node)
            except ClusterError:
                pass
    for node in layout.nodes:
        if server_pid(layout, node) is None:
            control.start(layout, node)
    control.await_formation(layout)


@pytest.fixture
def cluster_vhost(whole_cluster: Layout) -> Iterator[ClusterVhost]:
    host = ClusterVhost.create(whole_cluster)
    yield host
    host.delete()
