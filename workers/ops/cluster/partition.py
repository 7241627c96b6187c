"""Cut one node of a local cluster off from its peers, and heal the cut (Linux, root).

All nodes of a local cluster talk over loopback, so a port rule alone can't
tell whose traffic a packet is: a node's outgoing connections leave from
ephemeral ports. Each node's processes are therefore put into their own
cgroup v1 ``net_cls`` group, which tags the node's sockets with a class id,
and an nftables table drops, on the output hook (loopback packets pass it):

- what the cut node sends to its peers' distribution ports;
- what the peers send to the cut node's distribution port.

One direction of every inter-node connection is enough to stall it: after
``net_ticktime`` the nodes declare each other down (``pause_minority`` makes
the cut node pause itself). AMQP clients and ``rabbitmqctl`` (in no group) still
reach every node. Healing deletes the table, moves the processes back to the
root group and removes the groups; ``cluster-down`` does the same, so no group
or rule outlives the cluster. Rejected: network namespaces with veth pairs
(every node would have to be started inside its namespace, another layout),
``tc netem`` (not in this kernel), port rules alone (see above).

The names carry the base port (table ``platform_cluster_<port>``, groups
``platform-<port>-<node>``), so two clusters never touch each other's rules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from workers.ops.cluster.layout import Layout, Node

#: Where the cgroup v1 ``net_cls`` hierarchy is mounted (mounted here if it is not).
NET_CLS_ROOT = Path("/sys/fs/cgroup/net_cls")
#: nftables address family of the table (``inet``: IPv4 and IPv6).
FAMILY = "inet"
#: The class ids' major number (``net_cls.classid`` is major:minor, 16 bits each) is this plus the node.
CLASS_MAJOR_BASE = 0x100


class PartitionError(RuntimeError):
    """A partition can't be made or healed here; the message says why in one line."""


def table_name(layout: Layout) -> str:
    """The nftables table of ``layout``'s cuts."""
    return f"platform_cluster_{layout.base_port}"


def group_name(layout: Layout, node: Node) -> str:
    """The ``net_cls`` group of ``node``'s processes."""
    return f"platform-{layout.base_port}-{node.number}"


def class_id(layout: Layout, node: Node) -> int:
    """``node``'s ``net_cls`` class id: major ``0x100 + number``, minor the base port."""
    return ((CLASS_MAJOR_BASE + node.number) << 16) | (layout.base_port & 0xFFFF)


def ruleset(layout: Layout, cut: Node) -> str:
    """The nftables table (``nft -f`` input) that cuts ``cut`` off from the other nodes."""
    peers = [node for node in layout.nodes if node != cut]
    peer_ports = ", ".join(str(node.distribution_port) for node in peers)
    peer_classes = ", ".join(f"0x{class_id(layout, node):08x}" for node in peers)
    return (
        f"table {FAMILY} {table_name(layout)} {{\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    meta cgroup 0x{class_id(layout, cut):08x} tcp dport {{ {peer_ports} }} drop\n"
        f"    meta cgroup {{ {peer_classes} }} tcp dport {cut.distribution_port} drop\n"
        "  }\n"
        "}\n"
    )


def _nft(*args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["nft", *args], input=script, capture_output=True, text=True, timeout=10, check=False
        )
    except FileNotFoundError:
        raise PartitionError(
            "nft is not installed (Debian/Ubuntu: sudo apt-get install -y nftables)"
        ) from None


def _ensure_net_cls() -> None:
    if (NET_CLS_ROOT / "net_cls.classid").exists():
        return
    try:
        NET_CLS_ROOT.mkdir(exist_ok=True)
        subprocess.run(
            ["mount", "-t", "cgroup", "-o", "net_cls", "net_cls", str(NET_CLS_ROOT)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PartitionError(
            f"can't mount the cgroup v1 net_cls hierarchy at {NET_CLS_ROOT} (root?): {exc}"
        ) from None


def _move(pids: list[int], group: Path) -> None:
    for pid in pids:
        try:
            (group / "cgroup.procs").write_text(str(pid))
        except ProcessLookupError:  # ESRCH: it exited meanwhile
            pass


def partition(layout: Layout, cut: Node, pids_of: dict[int, list[int]]) -> None:
    """Cut ``cut`` off from the other nodes (``pids_of``: node number -> its processes' pids).

    Raises:
        PartitionError: not root, no cgroup v1 ``net_cls`` or no ``nft`` here, or ``nft`` refused.
    """
    if os.geteuid() != 0:
        raise PartitionError("a partition needs root (cgroups and nftables)")
    _ensure_net_cls()
    for node in layout.nodes:
        group = NET_CLS_ROOT / group_name(layout, node)
        group.mkdir(exist_ok=True)
        (group / "net_cls.classid").write_text(str(class_id(layout, node)))
        _move(pids_of.get(node.number, []), group)
    _nft("delete", "table", FAMILY, table_name(layout))  # a previous cut, if any
    result = _nft("-f", "-", script=ruleset(layout, cut))
    if result.returncode != 0:
        raise PartitionError(f"nft refused the rules: {result.stderr.strip()[:300]}")


def heal(layout: Layout) -> bool:
    """Remove ``layout``'s cut and groups (safe to run twice); True if there was a cut.

    Raises:
        PartitionError: a group can't be removed (a process could not be moved out).
    """
    had_table = (
        bool(shutil.which("nft")) and _nft("delete", "table", FAMILY, table_name(layout)).returncode == 0
    )
    for node in layout.nodes:
        group = NET_CLS_ROOT / group_name(layout, node)
        if not group.exists():
            continue
        pids = [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
        _move(pids, NET_CLS_ROOT)
        try:
            group.rmdir()
        except OSError as exc:
            raise PartitionError(f"can't remove cgroup {group}: {exc}") from None
    return had_table
