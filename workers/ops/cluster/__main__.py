"""``python -m workers.ops.cluster <verb>``: the local 3-node cluster for operators, make and tests.

Verbs::

    up | down | status          bring it up, tear it down, say how it stands
    kill N | stop N | start N   SIGKILL node N, stop it gracefully, start it again
    freeze N | thaw N           SIGSTOP / SIGCONT node N
    partition N | heal          cut node N off from its peers (cgroups + nftables, root) / undo it
    leader QUEUE                the node that leads quorum queue QUEUE (its number and name)
    kill-leader QUEUE           SIGKILL whichever node leads QUEUE

Exit codes: 0 done (status: the cluster is whole), 1 the cluster is not whole
or a verb failed (one line says why), 2 bad usage or a bad setting.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from workers.ops.cluster import control
from workers.ops.cluster.layout import SIZE, Layout, Node
from workers.ops.cluster.nodes import ClusterError

#: Exit codes.
OK, FAILED, USAGE = 0, 1, 2
#: Verbs that take a node number, and those that take a queue name.
NODE_VERBS = ("kill", "stop", "start", "freeze", "thaw", "partition")
QUEUE_VERBS = ("leader", "kill-leader")


def say(line: str) -> None:
    print(f"cluster: {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workers.ops.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("verb", choices=["up", "down", "status", "heal", *NODE_VERBS, *QUEUE_VERBS])
    parser.add_argument("target", nargs="?", help=f"node number (1-{SIZE}) or queue name")
    args = parser.parse_args(argv)

    from config.settings import SettingsError, load_settings

    try:
        layout = control.layout_of(load_settings())
    except SettingsError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return USAGE
    try:
        if args.verb in NODE_VERBS:
            node = layout.node(_number(args.target))
            if args.verb in ("stop", "start"):
                say(f"{args.verb} node {node.number} ({node.name}): waiting for it")
            verbs: dict[str, Callable[[Layout, Node], object]] = {
                "kill": control.kill,
                "stop": control.stop,
                "start": control.start,
                "freeze": control.freeze,
                "thaw": control.thaw,
                "partition": control.partition,
            }
            verbs[args.verb](layout, node)
            say(f"node {node.number} ({node.name}): {args.verb} done")
            return OK
        if args.verb in QUEUE_VERBS:
            if not args.target:
                raise ValueError(f"{args.verb} needs a queue name, e.g. {args.verb} orders")
            name = control.leader(layout, args.target)
            leading = control.node_named(layout, name)
            if args.verb == "kill-leader":
                control.kill(layout, leading)
                say(f"killed node {leading.number} ({name}), the leader of {args.target}")
            else:
                print(f"{leading.number} {name}")
            return OK
        if args.verb == "up":
            control.up(layout, say)
            healthy = control.status(layout, say)
            say(
                f"platform URLs: {layout.folder}/platform.env (use PLATFORM_CLUSTER=1, or make ... CLUSTER=1)"
            )
            return OK if healthy else FAILED
        if args.verb == "heal":
            say("partition healed" if control.heal(layout) else "no partition to heal")
            return OK
        if args.verb == "down":
            control.down(layout, say)
            return OK
        return OK if control.status(layout, say) else FAILED
    except ValueError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return USAGE
    except ClusterError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return FAILED


def _number(raw: str | None) -> int:
    if raw is None or not raw.isdigit():
        raise ValueError(f"say which node: a number from 1 to {SIZE}, e.g. NODE=2")
    return int(raw)


if __name__ == "__main__":
    sys.exit(main())
