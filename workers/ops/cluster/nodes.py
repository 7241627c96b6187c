"""The processes of a local cluster: start them, find them, signal them, ask them.

Every process started here carries :data:`~workers.ops.cluster.layout.MARK`
(the cluster folder) in its environment, and that mark is the only way
processes are found again (``/proc/<pid>/environ``): the machine's own
RabbitMQ, its epmd and anybody else's nodes are never touched. Every
``rabbitmqctl`` call has a ``--timeout`` and a hard deadline on top (a node
cut off from its peers can make ``list_queues`` hang for a minute).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from workers.ops.cluster.layout import HOST, MARK, USER, Layout, Node, node_environment

#: Seconds a ``rabbitmqctl`` call may take beyond its own ``--timeout`` before it is killed.
CTL_GRACE = 10.0
#: Where Debian's package keeps the real scripts (``/usr/sbin`` ones switch to the rabbitmq user).
PACKAGE_BIN = Path("/usr/lib/rabbitmq/bin")


class ClusterError(RuntimeError):
    """The cluster can't do what was asked; the message says why in one line."""


def tool(name: str) -> str:
    """The path of RabbitMQ's ``name`` script (rabbitmq-server, rabbitmqctl), or epmd.

    Raises:
        ClusterError: it is not installed.
    """
    packaged = PACKAGE_BIN / name
    if packaged.exists():
        return str(packaged)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ClusterError(
            f"{name} is not installed (Debian/Ubuntu: sudo apt-get install -y rabbitmq-server)"
        )
    return found


def ctl(layout: Layout, node: Node, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run ``rabbitmqctl -n <node> --timeout <timeout> <args>`` against ``node``.

    Returns the finished process (its return code is the caller's to read).

    Raises:
        ClusterError: it ran past its timeout plus :data:`CTL_GRACE` (it is killed).
    """
    command = [tool("rabbitmqctl"), "-n", node.name, "--timeout", str(int(timeout)), *args]
    try:
        return subprocess.run(
            command,
            env=node_environment(layout, node),
            capture_output=True,
            text=True,
            timeout=timeout + CTL_GRACE,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(
            f"rabbitmqctl {' '.join(args)} on node {node.number} hung for {timeout:g}s"
        ) from None


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone meanwhile, or someone else's process
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, _, value in pairs}


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def processes(layout: Layout, node: Node | None = None) -> list[int]:
    """Pids of the live processes of this cluster (of ``node`` only, if given)."""
    _reap()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        environ = _environ(pid)
        if environ.get(MARK) != str(layout.folder):
            continue
        if node is not None and environ.get("RABBITMQ_NODENAME") != node.name:
            continue
        if _is_zombie(pid):
            continue
        found.append(pid)
    return found


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def server_pid(layout: Layout, node: Node) -> int | None:
    """The pid of ``node``'s Erlang VM (``beam.smp``), or None when it doesn't run."""
    for pid in processes(layout, node):
        if _command_name(pid).startswith("beam"):
            return pid
    return None


#: Servers and epmd started by this process: kept so they are reaped (no zombies) once they exit.
_children: list[subprocess.Popen[bytes]] = []


def _spawn(command: list[str], env: dict[str, str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children.append(process)
    return process.pid


def _reap() -> None:
    """Collect the exit status of started processes that have exited."""
    for child in list(_children):
        if child.poll() is not None:
            _children.remove(child)


def start_epmd(layout: Layout) -> None:
    """Start the cluster's own epmd on its port (loopback only), unless it answers already."""
    if _port_open(layout.epmd_port):
        return
    env = {**os.environ, MARK: str(layout.folder)}
    _spawn([tool("epmd"), "-port", str(layout.epmd_port), "-address", HOST], env, layout.epmd_log)
    deadline = time.monotonic() + 10
    while not _port_open(layout.epmd_port):
        if time.monotonic() > deadline:
            raise ClusterError(
                f"epmd did not listen on {HOST}:{layout.epmd_port} within 10s; see {layout.epmd_log}"
            )
        time.sleep(0.1)


def start_node(layout: Layout, node: Node) -> None:
    """Start ``node``'s server in the background (its data, if any, is kept)."""
    if server_pid(layout, node) is not None:
        return
    _spawn([tool("rabbitmq-server")], node_environment(layout, node), node.log_file)


def await_node(layout: Layout, node: Node, timeout: float = 120.0) -> None:
    """Return once ``node`` has booted (RabbitMQ and its plugins run).

    Raises:
        ClusterError: it did not within ``timeout`` seconds, or its process died.
    """
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if server_pid(layout, node) is None and time.monotonic() - started > 5:
            raise ClusterError(
                f"node {node.number} ({node.name}) exited while starting; see {node.folder}/log"
            )
        if node.pid_file.exists():
            remaining = max(int(deadline - time.monotonic()), 1)
            result = ctl(layout, node, "wait", str(node.pid_file), timeout=remaining)
            if result.returncode == 0:
                return
        time.sleep(0.5)
    raise ClusterError(
        f"node {node.number} ({node.name}) did not start within {timeout:g}s; see {node.folder}/log"
    )


def _last_line(node: Node) -> str:
    """The last line of what ``node``'s server printed (why it stopped), or where its logs are."""
    try:
        lines = [line for line in node.log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1][:300] if lines else f"see {node.folder}/log"


def running_nodes(layout: Layout, node: Node, timeout: float = 10.0) -> set[str]:
    """The nodes ``node`` sees running in its cluster (empty when it doesn't answer)."""
    try:
        result = ctl(layout, node, "cluster_status", "--formatter", "json", timeout=timeout)
    except ClusterError:
        return set()
    if result.returncode != 0:
        return set()
    try:
        return set(json.loads(result.stdout).get("running_nodes", []))
    except ValueError:
        return set()


def signal_node(layout: Layout, node: Node, signum: signal.Signals) -> int:
    """Send ``signum`` to ``node``'s Erlang VM; returns its pid.

    Raises:
        ClusterError: the node doesn't run.
    """
    pid = server_pid(layout, node)
    if pid is None:
        raise ClusterError(f"node {node.number} ({node.name}) is not running")
    os.kill(pid, signum)
    return pid


def kill_all(layout: Layout, timeout: float = 15.0) -> int:
    """SIGKILL every process of the cluster (thawed first, so none lingers stopped); returns how many.

    Raises:
        ClusterError: some are still alive after ``timeout`` seconds.
    """
    found = processes(layout)
    for pid in found:
        for signum in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    while processes(layout):
        if time.monotonic() > deadline:
            raise ClusterError(f"processes still alive after SIGKILL: {processes(layout)}")
        time.sleep(0.1)
    return len(found)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def open_ports(layout: Layout) -> list[int]:
    """The cluster's ports something still listens on."""
    return [port for port in layout.ports() if _port_open(port)]


def management_get(layout: Layout, password: str, path: str, timeout: float = 5.0) -> Any:
    """GET ``/api/<path>`` from the first node whose management API answers.

    Raises:
        ClusterError: no node answered.
    """
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    problems = []
    for node in layout.nodes:
        request = urllib.request.Request(f"http://{HOST}:{node.management_port}/api/{path}")
        request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise ClusterError(f"not found: /api/{path}") from None
            problems.append(f"node {node.number}: HTTP {exc.code}")
        except (OSError, ValueError) as exc:
            problems.append(f"node {node.number}: {exc.__class__.__name__}")
    raise ClusterError(f"no management API answered ({'; '.join(problems)})")
