"""The cluster case's own 3-node RabbitMQ cluster, and throw-away vhosts on it.

The case starts the cluster (:mod:`workers.ops.cluster`) once before its first
round and removes it after its last: every process, port and folder. It runs
on ``BENCH_CLUSTER_PORT`` (default 5711: AMQP 5711-5713, management
15711-15713, distribution 25711-25713, epmd 35711), apart from ``make
cluster-up`` (5681) and the chaos suite (5691), in a temporary folder.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import amqp

from tests.support.broker import Vhost
from tests.support.cluster import ClusterVhost, management
from workers.broker import amqp_connection
from workers.ops.cluster import control
from workers.ops.cluster.layout import Layout, Node
from workers.ops.cluster.nodes import server_pid

#: Base port of the benchmark's cluster.
CLUSTER_PORT = int(os.environ.get("BENCH_CLUSTER_PORT", "5711"))
#: Seconds a connection attempt to one node may take.
CONNECT_TIMEOUT = 5.0


@dataclass
class BenchCluster:
    """A cluster a case starts around its rounds; :attr:`layout` while it runs."""

    port: int = CLUSTER_PORT
    layout: Layout | None = None
    #: Seconds ``cluster-up`` took (the last start).
    started_in: float = 0.0

    @contextmanager
    def running(self) -> Iterator[Layout]:
        """Start the cluster in a temporary folder; stop it and remove the folder afterwards.

        Raises:
            ClusterError: it did not start, or something of it outlived ``down``.
        """
        layout = Layout(Path(tempfile.mkdtemp(prefix="bench-cluster-")).resolve(), self.port)
        began = time.monotonic()
        try:
            control.up(layout, lambda line: None)
            self.started_in = time.monotonic() - began
            self.layout = layout
            yield layout
        finally:
            self.layout = None
            control.down(layout, lambda line: None)

    def whole(self) -> Layout:
        """The running cluster with every node started again and clustered.

        Raises:
            RuntimeError: the case's cluster is not running (outside :meth:`running`).
        """
        if self.layout is None:
            raise RuntimeError("the cluster case's cluster is not running")
        for node in self.layout.nodes:
            if server_pid(self.layout, node) is None:
                control.start(self.layout, node)
        control.await_formation(self.layout)
        return self.layout


@dataclass
class ClusterBenchVhost(Vhost):
    """A vhost on the case's cluster, used like the shared broker's :class:`Vhost`.

    Its URL is the failover list of every node (node 1 first), as a platform
    process on the cluster gets it (``PLATFORM_CLUSTER=1``).
    """

    layout: Layout | None = None

    @classmethod
    def on(cls, layout: Layout) -> ClusterBenchVhost:
        return cls(ClusterVhost.create(layout).name, layout)

    def _layout(self) -> Layout:
        if self.layout is None:
            raise RuntimeError(f"vhost {self.name} has no cluster")
        return self.layout

    @property
    def url(self) -> str:
        return ClusterVhost(self._layout(), self.name).url()

    def connect(self) -> amqp.Connection:
        """A raw connection to the first node that answers."""
        return amqp_connection(self.url, timeout=CONNECT_TIMEOUT)

    def delete(self) -> None:
        management(self._layout(), "DELETE", f"vhosts/{urllib.parse.quote(self.name, safe='')}")

    def leader(self, queue: str) -> Node:
        """The node that leads quorum queue ``queue`` in this vhost."""
        return ClusterVhost(self._layout(), self.name).leader(queue)


@contextmanager
def cluster_vhost(cluster: BenchCluster) -> Iterator[ClusterBenchVhost]:
    """A fresh vhost on the whole cluster, deleted afterwards (on a node that answers)."""
    vhost = ClusterBenchVhost.on(cluster.whole())
    try:
        yield vhost
    finally:
        try:
            vhost.delete()
        except OSError:
            pass  # a node is down: the vhost goes with the cluster at the end of the case
