"""The partition verb's rules: a cut drops only inter-node traffic of the cut node, per cluster."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from workers.ops.cluster.layout import Layout
from workers.ops.cluster.partition import class_id, group_name, ruleset, table_name


def test_each_node_of_each_cluster_gets_its_own_class_group_and_table() -> None:
    first, second = Layout(Path("/a"), 5691), Layout(Path("/b"), 5721)
    ids = {class_id(layout, node) for layout in (first, second) for node in layout.nodes}
    assert len(ids) == 6
    assert class_id(second, second.node(3)) == 0x0103_1659  # major 0x103, minor 5721
    assert group_name(second, second.node(2)) == "platform-5721-2"
    assert table_name(first) != table_name(second)


def test_a_cut_drops_the_nodes_distribution_traffic_both_ways_and_nothing_else() -> None:
    layout = Layout(Path("/c"), 5721)
    rules = ruleset(layout, layout.node(3))
    assert "table inet platform_cluster_5721" in rules
    assert "meta cgroup 0x01035721" not in rules  # hex, not the decimal port pasted in
    assert f"meta cgroup 0x{class_id(layout, layout.node(3)):08x} tcp dport {{ 25721, 25722 }} drop" in rules
    peers = f"0x{class_id(layout, layout.node(1)):08x}, 0x{class_id(layout, layout.node(2)):08x}"
    assert f"meta cgroup {{ {peers} }} tcp dport 25723 drop" in rules
    for client_port in ("5721", "5722", "5723", "15723", "35721"):
        assert f"dport {client_port} " not in rules and f"dport {{ {client_port}" not in rules


@pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed")
def test_nft_accepts_the_rules() -> None:
    layout = Layout(Path("/c"), 5721)
    checked = subprocess.run(
        ["nft", "-c", "-f", "-"],
        input=ruleset(layout, layout.node(2)),
        capture_output=True,
        text=True,
        check=False,
    )
    if "Operation not permitted" in checked.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert checked.returncode == 0, checked.stderr
