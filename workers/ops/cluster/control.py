"""Bring a local 3-node cluster up and down, say how it stands, and inject faults into it.

``up`` starts the cluster's own epmd, node 1, then nodes 2 and 3 (which join
node 1 by classic peer discovery), waits until every node sees all three,
and declares the platform's topology through the failover URL list, so each
quorum queue gets a member on every node. It writes the platform's URLs to
``<folder>/platform.env``, which ``PLATFORM_CLUSTER=1`` reads
(:mod:`config.settings`). ``down`` SIGKILLs the cluster's processes (found by
their mark, :mod:`workers.ops.cluster.nodes`) and removes its folder; both can
run twice.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import CLUSTER_ENV_FILE, Settings, load_settings
from workers.broker import declare_topology, settings_connection
from workers.ops.cluster import partition as cut
from workers.ops.cluster.layout import SIZE, VHOST, Layout, Node, advanced_config, node_config
from workers.ops.cluster.nodes import (
    ClusterError,
    await_node,
    ctl,
    kill_all,
    management_get,
    open_ports,
    processes,
    running_nodes,
    server_pid,
    signal_node,
    start_epmd,
    start_node,
)
from workers.ops.platform_user import stored_password, write_env_file, write_private

#: Prints one line of progress.
Say = Callable[[str], None]
#: Seconds the nodes may take to see each other once they have all booted.
FORMATION_TIMEOUT = 60.0
#: Quorum queues short of members that ``status`` lists by name.
SHOWN = 8


def layout_of(settings: Settings) -> Layout:
    """The cluster that ``settings`` point at (``PLATFORM_CLUSTER_DIR``, ``PLATFORM_CLUSTER_PORT``)."""
    return Layout(Path(settings.cluster_dir).resolve(), settings.cluster_port)


def password_of(layout: Layout) -> str:
    """The platform user's password on the cluster.

    Raises:
        ClusterError: no cluster was set up in ``layout.folder``.
    """
    try:
        return layout.credentials_file.read_text().strip()
    except FileNotFoundError:
        raise ClusterError(f"no cluster in {layout.folder} (run: make cluster-up)") from None


def prepare(layout: Layout) -> str:
    """Write the cluster's folder (cookie, password, configs); returns the password.

    An existing cookie and password are kept, so a restarted node still
    belongs to its cluster.
    """
    layout.folder.mkdir(parents=True, exist_ok=True)
    if not layout.cookie_file.exists():
        # Erlang reads the cookie only if no one else may.
        write_private(layout.cookie_file, secrets.token_hex(20), 0o400)
    # The same password file as make broker's platform user (workers.ops.platform_user).
    password = stored_password(layout.credentials_file)
    layout.plugins_file.write_text("[rabbitmq_management].\n")
    layout.env_file.write_text(
        "# Empty: the machine's /etc/rabbitmq/rabbitmq-env.conf is not for this cluster.\n"
    )
    for node in layout.nodes:
        node.folder.mkdir(exist_ok=True)
        write_private(node.config_file, node_config(layout, node, password))
        (node.folder / "advanced.config").write_text(advanced_config())
    write_env_file(
        layout.folder / CLUSTER_ENV_FILE, layout.broker_url(password), layout.management_url(password)
    )
    return password


def up(layout: Layout, say: Say, timeout: float = 120.0) -> None:
    """Start the cluster (what runs already is kept) and declare the platform's topology.

    Raises:
        ClusterError: a node did not start or the nodes did not form one cluster.
    """
    taken = [port for port in open_ports(layout) if not processes(layout)]
    if taken:
        raise ClusterError(f"ports {taken} are in use by something else; choose PLATFORM_CLUSTER_PORT")
    prepare(layout)
    started = time.monotonic()
    start_epmd(layout)
    first, *others = layout.nodes
    say(f"starting node 1 ({first.name}, AMQP {first.amqp_port})")
    start_node(layout, first)
    await_node(layout, first, timeout)
    for node in others:
        say(f"starting node {node.number} ({node.name}, AMQP {node.amqp_port})")
        start_node(layout, node)
    with ThreadPoolExecutor(len(others)) as pool:
        list(pool.map(lambda node: await_node(layout, node, timeout), others))
    await_formation(layout)
    say(f"{SIZE} nodes clustered after {time.monotonic() - started:.0f}s; declaring the topology")
    declare(layout)


def await_formation(layout: Layout, timeout: float = FORMATION_TIMEOUT) -> None:
    """Return once every node sees all nodes running.

    Raises:
        ClusterError: they did not within ``timeout`` seconds.
    """
    wanted = {node.name for node in layout.nodes}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(running_nodes(layout, node) == wanted for node in layout.nodes):
            return
        time.sleep(1)
    seen = {node.number: sorted(running_nodes(layout, node)) for node in layout.nodes}
    raise ClusterError(f"the nodes did not form one cluster within {timeout:g}s: {seen}")


def cluster_settings(layout: Layout) -> Settings:
    """The platform's settings with ``PLATFORM_CLUSTER=1`` on this cluster."""
    environ = {
        **os.environ,
        "PLATFORM_CLUSTER": "1",
        "PLATFORM_CLUSTER_DIR": str(layout.folder),
        "PLATFORM_CLUSTER_PORT": str(layout.base_port),
    }
    return load_settings(environ)


def declare(layout: Layout) -> int:
    """Declare the platform's topology on the cluster; returns how many queues."""
    from config.app import build_topology

    settings = cluster_settings(layout)
    with settings_connection(settings) as connection:
        return declare_topology(connection, build_topology(settings))


def down(layout: Layout, say: Say) -> None:
    """Heal any partition, stop every process of the cluster and remove its folder (safe to run twice).

    Raises:
        ClusterError: something of it survived SIGKILL, or a port stays taken.
    """
    try:
        cut.heal(layout)
    except cut.PartitionError as exc:
        raise ClusterError(str(exc)) from None
    killed = kill_all(layout)
    deadline = time.monotonic() + 10
    while (left := open_ports(layout)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        raise ClusterError(f"ports {left} still listen after the cluster's processes are gone")
    existed = layout.folder.exists()
    shutil.rmtree(layout.folder, ignore_errors=True)
    say(
        f"stopped {killed} processes; {'removed ' + str(layout.folder) if existed else 'no folder to remove'}"
    )


@dataclass(frozen=True)
class QueueMembers:
    """One quorum queue's members as the management API sees them."""

    name: str
    members: tuple[str, ...]
    online: tuple[str, ...]
    leader: str


def quorum_queues(layout: Layout, timeout: float = 5.0) -> list[QueueMembers]:
    """Every quorum queue of the platform's vhost with its members, online members and leader."""
    raw: list[dict[str, Any]] = management_get(
        layout, password_of(layout), f"queues/{VHOST}?columns=name,type,members,online,leader", timeout
    )
    return [
        QueueMembers(
            q["name"], tuple(q.get("members") or ()), tuple(q.get("online") or ()), q.get("leader") or ""
        )
        for q in raw
        if q.get("type") == "quorum"
    ]


def status(layout: Layout, say: Say) -> bool:
    """Say how each node and quorum queue stands; True only if all is whole.

    Whole: every node runs and sees all nodes running, and every quorum queue
    of the platform's vhost has all nodes as members, all online.
    """
    password_of(layout)
    wanted = {node.name for node in layout.nodes}
    healthy = True
    for node in layout.nodes:
        pid = server_pid(layout, node)
        seen = running_nodes(layout, node) if pid is not None else set()
        state = "not running" if pid is None else ("frozen" if _stopped(pid) else f"pid {pid}")
        ok = seen == wanted
        healthy &= ok
        say(
            f"node {node.number}  {node.name:<24} AMQP {node.amqp_port}  {state:<12} sees {len(seen)}/{SIZE} running"
        )
    try:
        queues = quorum_queues(layout)
    except ClusterError as exc:
        say(f"quorum queues: unknown ({exc})")
        return False
    short = [q for q in queues if set(q.members) != wanted or set(q.online) != wanted]
    say(
        f"quorum queues: {len(queues)} in vhost {VHOST!r}, {len(queues) - len(short)} with all {SIZE} members online"
    )
    for queue in short[:SHOWN]:
        say(
            f"  {queue.name}: members {len(queue.members)}, online {len(queue.online)}, leader {queue.leader or '-'}"
        )
    if len(short) > SHOWN:
        say(f"  ... and {len(short) - SHOWN} more")
    if not queues:
        say("  none declared yet (make topology CLUSTER=1, or start a worker)")
    return healthy and not short and bool(queues)


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"
    except OSError:
        return False


# --------------------------------------------------------------------- faults


def kill(layout: Layout, node: Node) -> int:
    """SIGKILL ``node``'s Erlang VM (a crash: no goodbye to peers or clients); returns its pid."""
    return signal_node(layout, node, signal.SIGKILL)


def freeze(layout: Layout, node: Node) -> int:
    """SIGSTOP ``node``: its sockets stay open but nothing answers (a hung VM, a long GC)."""
    return signal_node(layout, node, signal.SIGSTOP)


def thaw(layout: Layout, node: Node) -> int:
    """SIGCONT a frozen ``node``."""
    return signal_node(layout, node, signal.SIGCONT)


def partition(layout: Layout, node: Node) -> None:
    """Cut ``node`` off from its peers (:mod:`workers.ops.cluster.partition`); clients still reach it.

    Raises:
        ClusterError: it doesn't run, or a partition can't be made here (root, cgroups, nftables).
    """
    if server_pid(layout, node) is None:
        raise ClusterError(f"node {node.number} ({node.name}) is not running")
    try:
        cut.partition(layout, node, {n.number: processes(layout, n) for n in layout.nodes})
    except (cut.PartitionError, OSError) as exc:
        raise ClusterError(f"can't partition node {node.number}: {exc}") from None


def heal(layout: Layout) -> bool:
    """Undo :func:`partition` (safe to run twice); True if there was a cut.

    Raises:
        ClusterError: the cut's rules or groups could not be removed.
    """
    try:
        return cut.heal(layout)
    except (cut.PartitionError, OSError) as exc:
        raise ClusterError(f"can't heal: {exc}") from None


def stop(layout: Layout, node: Node, timeout: float = 60.0) -> None:
    """Stop ``node`` gracefully (``rabbitmqctl stop``: it leaves its peers in order).

    Raises:
        ClusterError: it doesn't run, or did not stop within ``timeout``.
    """
    if server_pid(layout, node) is None:
        raise ClusterError(f"node {node.number} ({node.name}) is not running")
    ctl(layout, node, "stop", timeout=timeout)
    deadline = time.monotonic() + timeout
    while server_pid(layout, node) is not None:
        if time.monotonic() > deadline:
            raise ClusterError(f"node {node.number} did not stop within {timeout:g}s")
        time.sleep(0.2)


def start(layout: Layout, node: Node, timeout: float = 120.0) -> None:
    """Start a stopped or killed ``node`` again (with its data) and wait until it runs."""
    password_of(layout)
    start_epmd(layout)
    start_node(layout, node)
    await_node(layout, node, timeout)


def leader(layout: Layout, queue: str) -> str:
    """The node that leads quorum queue ``queue`` (asked of any node that answers).

    Raises:
        ClusterError: no such queue, or no node answered.
    """
    info = management_get(layout, password_of(layout), f"queues/{VHOST}/{queue}")
    found = info.get("leader") or info.get("node")
    if not found:
        raise ClusterError(f"queue {queue!r} has no leader right now")
    return str(found)


def node_named(layout: Layout, name: str) -> Node:
    """The node called ``name`` (as a leader is reported).

    Raises:
        ClusterError: no node of this cluster has that name.
    """
    for node in layout.nodes:
        if node.name == name:
            return node
    raise ClusterError(f"{name!r} is not a node of this cluster")
