"""Where a local 3-node RabbitMQ cluster lives: names, ports, folders, files (pure, no I/O).

One base port ``B`` (``PLATFORM_CLUSTER_PORT``, default 5681) places every
listener of node ``i`` (0, 1, 2), all on 127.0.0.1 and apart from the
machine's own RabbitMQ (5672, epmd 4369, distribution 25672)::

    AMQP            B + i           5681 5682 5683
    management      B + 10000 + i   15681 15682 15683
    distribution    B + 20000 + i   25681 25682 25683
    epmd (shared)   B + 30000       35681

Node names carry the base port (``rabbit-5681-1@localhost``), so two clusters
with different base ports never mix, and every process of a node carries
:data:`MARK` (the cluster folder) in its environment: ``cluster-down`` finds
exactly those and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The platform's user and vhost, the same as make broker's (RabbitMQ refuses ``guest`` off loopback).
from workers.ops.platform_user import USER as USER
from workers.ops.platform_user import VHOST as VHOST

#: Nodes in a local cluster (a quorum queue on 3 survives the loss of any one).
SIZE = 3
#: The environment variable that marks every process of a cluster with its folder.
MARK = "PLATFORM_CLUSTER_MARK"
#: Offsets of the management, distribution and epmd ports from the base port.
MANAGEMENT_OFFSET, DISTRIBUTION_OFFSET, EPMD_OFFSET = 10_000, 20_000, 30_000
#: Seconds after which a silent peer (frozen, cut off) is declared down (Erlang's default is 60).
#: Until then an operation on a classic queue homed there hangs for RabbitMQ's 15 s channel
#: operation timeout and closes the client's connection: a worker could not fail over. And
#: until then a quorum queue whose leader froze gets no new consumer: with 10 s a worker
#: whose node froze completed a task again 11-19.5 s after the freeze (slower with more
#: queues in the cluster); with 5 s, 10.3-10.6 s (its own heartbeats, 10 s, are the floor).
NET_TICKTIME = 5
#: Milliseconds a channel operation waits on another node before the connection is closed
#: (RabbitMQ's default is 15,000: a declare touching a frozen node stalled a failover that long).
CHANNEL_OPERATION_TIMEOUT_MS = 5000
#: Milliseconds a quorum queue's at-least-once dead-lettering waits for the target's confirm
#: before it sends again (RabbitMQ's default is 180,000). The delay levels and retry ladders
#: dead-letter this way: a message that expired while its target's leader was stopping waited
#: the full 3 minutes (measured: delayed tasks 3 min late after a node restart).
DEAD_LETTER_CONFIRM_TIMEOUT_MS = 5000
#: Host every listener binds to.
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Node:
    """One node of the cluster: its number (1-based), name, ports and folder."""

    number: int
    name: str
    amqp_port: int
    management_port: int
    distribution_port: int
    folder: Path

    @property
    def config_file(self) -> Path:
        return self.folder / "rabbitmq.conf"

    @property
    def pid_file(self) -> Path:
        return self.folder / "rabbit.pid"

    @property
    def log_file(self) -> Path:
        """Where the server's own stdout and stderr go (RabbitMQ's logs are in ``log/``)."""
        return self.folder / "server.log"


@dataclass(frozen=True)
class Layout:
    """A cluster of :data:`SIZE` nodes under ``folder`` with base port ``base_port``."""

    folder: Path
    base_port: int

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(
            Node(
                number=i + 1,
                name=f"rabbit-{self.base_port}-{i + 1}@localhost",
                amqp_port=self.base_port + i,
                management_port=self.base_port + MANAGEMENT_OFFSET + i,
                distribution_port=self.base_port + DISTRIBUTION_OFFSET + i,
                folder=self.folder / f"node{i + 1}",
            )
            for i in range(SIZE)
        )

    @property
    def epmd_port(self) -> int:
        return self.base_port + EPMD_OFFSET

    @property
    def cookie_file(self) -> Path:
        """The Erlang cookie (``$HOME/.erlang.cookie`` of every node and rabbitmqctl call)."""
        return self.folder / ".erlang.cookie"

    @property
    def credentials_file(self) -> Path:
        """The platform user's password (mode 0600), written by ``cluster-up``."""
        return self.folder / "credentials"

    @property
    def plugins_file(self) -> Path:
        return self.folder / "enabled_plugins"

    @property
    def env_file(self) -> Path:
        """An empty rabbitmq-env.conf, so the machine's /etc/rabbitmq one is not read."""
        return self.folder / "rabbitmq-env.conf"

    @property
    def epmd_log(self) -> Path:
        return self.folder / "epmd.log"

    def node(self, number: int) -> Node:
        """Node ``number`` (1-based).

        Raises:
            ValueError: there is no such node.
        """
        if not 1 <= number <= SIZE:
            raise ValueError(f"there is no node {number}: the cluster has nodes 1 to {SIZE}")
        return self.nodes[number - 1]

    def broker_url(self, password: str) -> str:
        """Every node's AMQP URL, joined by ``;`` (kombu's failover list), node 1 first."""
        return ";".join(f"amqp://{USER}:{password}@{HOST}:{node.amqp_port}/{VHOST}" for node in self.nodes)

    def management_url(self, password: str) -> str:
        """Every node's management API root, joined by ``;`` (the tools try them in order)."""
        return ";".join(f"http://{USER}:{password}@{HOST}:{node.management_port}/api/" for node in self.nodes)

    def ports(self) -> tuple[int, ...]:
        """Every port the cluster listens on."""
        return (
            self.epmd_port,
            *(port for n in self.nodes for port in (n.amqp_port, n.management_port, n.distribution_port)),
        )


def platform_user_config(password: str) -> str:
    """``rabbitmq.conf`` lines that make the platform user (an administrator) and its vhost at first boot."""
    return f"""default_user = {USER}
default_pass = {password}
default_vhost = {VHOST}
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
"""


def node_config(layout: Layout, node: Node, password: str) -> str:
    """The ``rabbitmq.conf`` of ``node``: loopback listeners, the platform user, classic peer discovery.

    The default user and vhost are created on a fresh cluster only (the first
    node to boot); the others join it and share them. ``pause_minority`` makes a
    node cut off from the majority stop serving instead of diverging.
    """
    peers = "\n".join(
        f"cluster_formation.classic_config.nodes.{peer.number} = {peer.name}" for peer in layout.nodes
    )
    return f"""# Written by `make cluster-up`; removed by `make cluster-down`.
listeners.tcp.1 = {HOST}:{node.amqp_port}
management.tcp.ip = {HOST}
management.tcp.port = {node.management_port}
loopback_users = none
{platform_user_config(password)}cluster_formation.peer_discovery_backend = classic_config
{peers}
cluster_partition_handling = pause_minority
net_ticktime = {NET_TICKTIME}
log.console = false
log.file.level = info
"""


def advanced_config() -> str:
    """The nodes' ``advanced.config``: what rabbitmq.conf has no key for."""
    return (
        f"[{{rabbit, [{{channel_operation_timeout, {CHANNEL_OPERATION_TIMEOUT_MS}}}, "
        f"{{dead_letter_worker_publisher_confirm_timeout, {DEAD_LETTER_CONFIRM_TIMEOUT_MS}}}]}}].\n"
    )


def node_environment(layout: Layout, node: Node, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of ``node``'s server and of every ``rabbitmqctl`` call aimed at it.

    Everything RabbitMQ would otherwise take from the machine's installation
    (node name, ports, data and log folders, config, plugins, the cookie in
    ``$HOME``, /etc/rabbitmq/rabbitmq-env.conf) points into the cluster folder.
    """
    env = dict(os.environ if base is None else base)
    env.update(
        {
            MARK: str(layout.folder),
            "HOME": str(layout.folder),
            "ERL_EPMD_PORT": str(layout.epmd_port),
            "ERL_EPMD_ADDRESS": HOST,
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.distribution_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_CONF_ENV_FILE": str(layout.env_file),
            "RABBITMQ_CONFIG_FILE": str(node.config_file),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(layout.plugins_file),
            "RABBITMQ_MNESIA_BASE": str(node.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.folder / "log"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            "ERL_CRASH_DUMP": str(node.folder / "erl_crash.dump"),
        }
    )
    return env
