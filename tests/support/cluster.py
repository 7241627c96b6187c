"""A local 3-node cluster for tests (``workers.ops.cluster``), and a fresh vhost on it per test.

The chaos tests start one cluster per session in a temporary folder, on
``CHAOS_CLUSTER_PORT`` (default 5691, apart from a hand-run ``make cluster-up``
on 5681), and tear it down at the end.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import amqp

from workers.broker import amqp_connection, close_quietly
from workers.ops.cluster.control import password_of
from workers.ops.cluster.layout import HOST, USER, Layout, Node

#: Base port of the test cluster.
CLUSTER_PORT = int(os.environ.get("CHAOS_CLUSTER_PORT", "5691"))


def management(layout: Layout, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
    """Call the management API of the first node that answers."""
    token = base64.b64encode(f"{USER}:{password_of(layout)}".encode()).decode()
    problems = []
    for node in layout.nodes:
        request = urllib.request.Request(
            f"http://{HOST}:{node.management_port}/api/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
        )
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = response.read()
            return json.loads(payload) if payload else None
        except urllib.error.HTTPError:
            raise
        except OSError as exc:
            problems.append(f"node {node.number}: {exc!r}")
    raise OSError(f"no management API answered: {problems}")


@dataclass
class ClusterVhost:
    """A throw-away vhost on the test cluster."""

    layout: Layout
    name: str

    @classmethod
    def create(cls, layout: Layout) -> ClusterVhost:
        name = f"chaos-{uuid.uuid4().hex[:10]}"
        quoted = urllib.parse.quote(name, safe="")
        management(layout, "PUT", f"vhosts/{quoted}", {})
        management(
            layout, "PUT", f"permissions/{quoted}/{USER}", {"configure": ".*", "write": ".*", "read": ".*"}
        )
        return cls(layout, name)

    def url(self, first: Node | None = None) -> str:
        """The failover list of every node's URL for this vhost (``first`` first, then in turn)."""
        nodes = list(self.layout.nodes)
        if first is not None:
            start = nodes.index(first)
            nodes = nodes[start:] + nodes[:start]
        quoted = urllib.parse.quote(self.name, safe="")
        password = password_of(self.layout)
        return ";".join(f"amqp://{USER}:{password}@{HOST}:{node.amqp_port}/{quoted}" for node in nodes)

    def connect(self) -> amqp.Connection:
        return amqp_connection(self.url(), timeout=5)

    def take_all(self, queue: str) -> list[amqp.Message]:
        """Consume and ack every ready message of ``queue`` (a missing queue has none)."""
        messages = []
        connection = self.connect()
        try:
            channel = connection.channel()
            while (message := channel.basic_get(queue, no_ack=True)) is not None:
                messages.append(message)
        except amqp.exceptions.NotFound:
            pass
        finally:
            close_quietly(connection)
        return messages

    def queue_info(self, queue: str) -> dict[str, Any]:
        quoted = urllib.parse.quote(self.name, safe="")
        return management(self.layout, "GET", f"queues/{quoted}/{queue}")

    def waiting(self) -> dict[str, int]:
        """Queue -> messages, of every queue in this vhost that holds some (management stats)."""
        quoted = urllib.parse.quote(self.name, safe="")
        try:
            queues = management(self.layout, "GET", f"queues/{quoted}?columns=name,messages")
        except (urllib.error.HTTPError, OSError) as exc:
            return {f"unknown ({exc.__class__.__name__})": -1}
        return {q["name"]: q.get("messages") or 0 for q in queues if q.get("messages")}

    def leader(self, queue: str) -> Node:
        """The node that leads quorum queue ``queue`` in this vhost."""
        name = self.queue_info(queue).get("leader")
        for node in self.layout.nodes:
            if node.name == name:
                return node
        raise LookupError(f"queue {queue} has no leader: {name!r}")
