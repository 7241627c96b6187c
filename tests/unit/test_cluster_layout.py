"""The local cluster's layout: its ports, names and environment never meet the machine's own broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.ops.cluster.layout import MARK, Layout, node_config, node_environment

#: The machine's own RabbitMQ: AMQP, management, distribution, epmd.
DEFAULT_PORTS = {5672, 15672, 25672, 4369}


@pytest.mark.parametrize("base", [5681, 5691, 20000])
def test_every_port_of_a_cluster_is_its_own_and_none_is_the_default_nodes(base: int) -> None:
    layout = Layout(Path("/tmp/cluster"), base)
    ports = layout.ports()
    assert len(set(ports)) == len(ports) == 10
    assert not set(ports) & DEFAULT_PORTS
    assert [node.amqp_port for node in layout.nodes] == [base, base + 1, base + 2]


def test_node_names_carry_the_base_port_so_two_clusters_never_mix() -> None:
    first, second = Layout(Path("/a"), 5681), Layout(Path("/b"), 5691)
    assert {n.name for n in first.nodes}.isdisjoint({n.name for n in second.nodes})
    assert first.node(2).name == "rabbit-5681-2@localhost"
    with pytest.raises(ValueError, match="no node 4"):
        first.node(4)


def test_a_node_takes_everything_from_the_cluster_folder_and_is_marked() -> None:
    layout = Layout(Path("/tmp/cl"), 5681)
    env = node_environment(layout, layout.node(3), base={"RABBITMQ_NODENAME": "rabbit@host", "PATH": "/bin"})
    assert env["RABBITMQ_NODENAME"] == "rabbit-5681-3@localhost"
    assert env["ERL_EPMD_PORT"] == "35681"
    assert env[MARK] == "/tmp/cl"
    assert env["HOME"] == "/tmp/cl"  # the cookie
    for name in (
        "RABBITMQ_MNESIA_BASE",
        "RABBITMQ_LOG_BASE",
        "RABBITMQ_CONFIG_FILE",
        "RABBITMQ_CONF_ENV_FILE",
    ):
        assert env[name].startswith("/tmp/cl/"), name


def test_a_node_listens_on_loopback_only_with_the_platform_user_and_knows_its_peers() -> None:
    layout = Layout(Path("/tmp/cl"), 5681)
    text = node_config(layout, layout.node(1), "s3cret")
    assert "listeners.tcp.1 = 127.0.0.1:5681" in text
    assert "management.tcp.ip = 127.0.0.1" in text
    assert "default_user = platform" in text and "guest" not in text
    for node in layout.nodes:
        assert node.name in text


def test_the_platform_urls_list_every_node_for_failover() -> None:
    layout = Layout(Path("/tmp/cl"), 5681)
    assert layout.broker_url("pw").split(";") == [
        f"amqp://platform:pw@127.0.0.1:{port}/platform" for port in (5681, 5682, 5683)
    ]
    assert len(layout.management_url("pw").split(";")) == 3


def test_the_nodes_retry_an_unconfirmed_dead_letter_after_seconds_not_three_minutes() -> None:
    """The delay levels and retry ladders dead-letter at-least-once: after a node restart a
    dead letter whose target leader was stopping is sent again after 5 s (RabbitMQ: 180 s)."""
    from workers.ops.cluster.layout import advanced_config

    config = advanced_config()
    assert "{dead_letter_worker_publisher_confirm_timeout, 5000}" in config
    assert "{channel_operation_timeout, 5000}" in config
    assert config.rstrip().endswith("]}].")
