"""A private one-node RabbitMQ with TLS listeners, for the TLS tests; never the machine's own broker.

It is node 1 of a :class:`~workers.ops.cluster.layout.Layout` (the local
cluster's code starts, finds and kills it: own node name, ports, epmd, cookie
and folder, every process marked), with a rabbitmq.conf of its own::

    AMQP (plain)        base        (5701 by default, TLS_NODE_PORT)
    AMQP over TLS       base + 1    (5702) the client's certificate is required; on 127.0.0.1
                                    and on 127.0.0.2, an address its certificate does not name
    management (https)  base + 10000
    distribution        base + 20000
    epmd                base + 30000

The server certificate comes from the test's own CA (:mod:`tests.support.tls`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.tls import Authority
from workers.ops.cluster.layout import HOST, Layout, Node, platform_user_config
from workers.ops.cluster.nodes import await_node, kill_all, processes, start_epmd, start_node
from workers.ops.platform_user import USER, VHOST, write_private

#: Base port of the TLS node (its plain AMQP port).
TLS_NODE_PORT = int(os.environ.get("TLS_NODE_PORT", "5701"))


@dataclass(frozen=True)
class TlsNode:
    """A running TLS node: where it listens and the platform user's password on it."""

    layout: Layout
    password: str
    started_in: float

    @property
    def node(self) -> Node:
        return self.layout.nodes[0]

    @property
    def amqps_port(self) -> int:
        return self.node.amqp_port + 1

    def amqps_url(self, host: str = "localhost") -> str:
        return f"amqps://{USER}:{self.password}@{host}:{self.amqps_port}/{VHOST}"

    def management_url(self, host: str = "localhost") -> str:
        return f"https://{USER}:{self.password}@{host}:{self.node.management_port}/api/"


def node_config(layout: Layout, node: Node, authority: Authority, password: str) -> str:
    tls_files = f"""cacertfile = {authority.ca}
certfile = {authority.server_cert}
keyfile = {authority.server_key}"""
    amqp_tls = "\n".join(f"ssl_options.{line}" for line in tls_files.splitlines())
    management_tls = "\n".join(f"management.ssl.{line}" for line in tls_files.splitlines())
    return f"""# A throw-away TLS node of the tests (tests/support/tls_node.py).
listeners.tcp.1 = {HOST}:{node.amqp_port}
listeners.ssl.1 = {HOST}:{node.amqp_port + 1}
listeners.ssl.2 = 127.0.0.2:{node.amqp_port + 1}
{amqp_tls}
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
management.ssl.ip = {HOST}
management.ssl.port = {node.management_port}
{management_tls}
collect_statistics_interval = 1000
loopback_users = none
{platform_user_config(password)}log.console = false
log.file.level = warning
"""


def start_tls_node(folder: Path, authority: Authority, timeout: float = 90.0) -> TlsNode:
    """Start the node in ``folder`` and wait until it runs; :func:`stop_tls_node` removes it.

    Raises:
        workers.ops.cluster.nodes.ClusterError: it did not start, or its ports are taken.
    """
    from workers.ops.cluster.nodes import ClusterError

    layout = Layout(folder.resolve(), TLS_NODE_PORT)
    node = layout.nodes[0]
    ports = (
        node.amqp_port,
        node.amqp_port + 1,
        node.management_port,
        node.distribution_port,
        layout.epmd_port,
    )
    taken = [port for port in ports if _listening(port)]
    if taken and not processes(layout):
        raise ClusterError(f"ports {taken} are in use by something else; set TLS_NODE_PORT")
    started = time.monotonic()
    node.folder.mkdir(parents=True, exist_ok=True)
    write_private(layout.cookie_file, secrets.token_hex(20), 0o400)
    password = secrets.token_urlsafe(12)
    layout.plugins_file.write_text("[rabbitmq_management].\n")
    layout.env_file.write_text("")
    (node.folder / "advanced.config").write_text("[].\n")
    write_private(node.config_file, node_config(layout, node, authority, password))
    start_epmd(layout)
    start_node(layout, node)
    await_node(layout, node, timeout)
    return TlsNode(layout, password, time.monotonic() - started)


def stop_tls_node(layout: Layout) -> None:
    """SIGKILL every process of the node and remove its folder."""
    kill_all(layout)
    shutil.rmtree(layout.folder, ignore_errors=True)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0
