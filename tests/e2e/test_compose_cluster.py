"""compose/cluster.yml: the 3-node cluster for Docker users, read as data (no Docker engine runs here)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.support.worker import ROOT

COMPOSE = ROOT / "compose"
NODES = ("rabbitmq", "rabbitmq-2", "rabbitmq-3")
#: The platform's processes besides the workers (one worker service per queue, read from the base file).
OTHER_ROLES = ("flower", "metrics", "alerts")


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "cluster.yml").read_text())


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def test_the_cluster_file_overrides_only_services_the_base_file_has_plus_two_nodes(cluster, base):
    """Laid over docker-compose.yml it adds rabbitmq-2 and -3 and touches only known roles."""
    assert set(cluster["services"]) - set(base["services"]) == {"rabbitmq-2", "rabbitmq-3"}
    assert set(cluster["volumes"]) == {"rabbitmq-2", "rabbitmq-3"}


def test_three_nodes_form_one_cluster_by_configuration_with_one_cookie(cluster):
    """Each node mounts the same cluster.conf, whose peer list names exactly the
    three hostnames, and all pass the same cookie to the server and to the CLI."""
    conf = (COMPOSE / "rabbitmq" / "cluster.conf").read_text()
    peers = re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = rabbit@(\S+)$", conf, re.M)
    assert sorted(peers) == sorted(NODES)
    assert "cluster_partition_handling = pause_minority" in conf
    cookies = set()
    for name in NODES:
        node = cluster["services"][name]
        assert node["hostname"] == name
        assert re.fullmatch(r"rabbitmq:3\.\d+-management", node["image"])
        assert any(v.endswith("/etc/rabbitmq/conf.d/20-cluster.conf:ro") for v in node["volumes"])
        assert node["healthcheck"]["test"][1] == "rabbitmq-diagnostics"
        env = node["environment"]
        assert env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] == env["RABBITMQ_CTL_ERL_ARGS"]
        cookies.add(env["RABBITMQ_CTL_ERL_ARGS"])
    assert len(cookies) == 1


def test_every_platform_role_gets_every_node_and_waits_for_all_three(cluster, base):
    """Workers, Flower, metrics and alerts get a failover list of the three nodes
    (AMQP and management API) and start once all three are healthy, so quorum
    queues are declared with a member on each."""
    workers = [name for name in base["services"] if name.startswith("worker-")]
    assert workers
    for role in (*workers, *OTHER_ROLES):
        service = cluster["services"][role]
        urls = service["environment"]["CELERY_BROKER_URL"].split(";")
        assert [re.search(r"@([^:]+):5672", url)[1] for url in urls] == list(NODES)
        apis = service["environment"]["PLATFORM_MANAGEMENT_URL"].split(";")
        assert [re.search(r"@([^:]+):15672", url)[1] for url in apis] == list(NODES)
        assert {n: d["condition"] for n, d in service["depends_on"].items()} == dict.fromkeys(
            NODES, "service_healthy"
        )
