"""compose/: the Docker Compose file, read as data (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.worker import ROOT

COMPOSE = ROOT / "compose"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def published(service: dict[str, Any]) -> set[int]:
    """Container ports a service publishes (short syntax ``[ip:]host:container``)."""
    return {int(str(port).rsplit(":", 1)[-1].split("/")[0]) for port in service.get("ports", [])}


def worker_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items() if name.startswith("worker-")}


def test_compose_runs_rabbitmq_workers_flower_and_monitoring(compose):
    """The broker, the workers, Flower, and the monitoring roles: the metrics
    endpoint, webhook alerts and a Prometheus loading the shipped alert rules."""
    others = set(compose["services"]) - set(worker_services(compose))
    assert others == {"rabbitmq", "flower", "metrics", "alerts", "prometheus"}
    prometheus = compose["services"]["prometheus"]
    mounted = " ".join(prometheus["volumes"])
    assert "prometheus/alerts.yml" in mounted and "prometheus/prometheus.yml" in mounted
    assert published(compose["services"]["metrics"]) == {9808}


def test_rabbitmq_has_management_publishes_amqp_and_the_api_and_is_healthchecked_with_diagnostics(compose):
    """RabbitMQ 3.x with the management plugin publishes 5672 and 15672, and its
    healthcheck asks rabbitmq-diagnostics."""
    rabbitmq = compose["services"]["rabbitmq"]
    assert re.fullmatch(r"rabbitmq:3\.\d+-management", rabbitmq["image"])
    assert published(rabbitmq) == {5672, 15672}
    check = rabbitmq["healthcheck"]
    assert check["test"][0] == "CMD" and check["test"][1] == "rabbitmq-diagnostics"
    assert {"interval", "timeout", "retries"} <= set(check)


def test_workers_come_from_the_one_image_and_can_scale(compose):
    """Every worker service builds compose/Dockerfile from the repository, waits for a healthy
    broker, and has no fixed name or host port, so `--scale worker-<queue>=N` works."""
    workers = worker_services(compose)
    assert workers
    for name, worker in workers.items():
        assert worker["build"] == {"context": "..", "dockerfile": "compose/Dockerfile"}, name
        assert worker["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name
        assert "container_name" not in worker and "ports" not in worker, name
        assert worker["command"] == ["compose/scripts/start-worker.sh"], name
        assert compose["services"]["flower"]["image"] == worker["image"], "one image for every role"


def test_each_queue_of_the_topology_has_one_worker_service_of_its_own(compose):
    """One service worker-<queue> per work queue, the default queue and each subscriber queue of
    the seed's subscriptions (which the file turns on), consuming only that queue: the compose
    pool scales a queue by scaling its service."""
    from config.app import build_topology
    from config.settings import load_settings
    from workers.scaling.names import worker_name

    environment = compose["services"]["worker-orders"]["environment"]
    subscriptions = environment["PLATFORM_SUBSCRIPTIONS_FILE"]
    assert subscriptions == "${PLATFORM_SUBSCRIPTIONS_FILE-config/subscriptions.toml}"
    topology = build_topology(load_settings({"PLATFORM_SUBSCRIPTIONS_FILE": "config/subscriptions.toml"}))
    assert any(queue.event_patterns for queue in topology.work_queues)
    wanted = {worker_name(queue): queue for queue in topology.names}
    workers = worker_services(compose)
    assert set(workers) == set(wanted)
    for name, worker in workers.items():
        assert worker["environment"]["WORKER_QUEUES"] == wanted[name]


def test_a_stopping_worker_has_time_for_a_warm_shutdown(compose):
    """Scaling down stops containers with SIGTERM (Celery's warm shutdown: the start script
    execs celery) and kills them after stop_grace_period: as long as the Kubernetes workers'
    grace period, 300 s."""
    from workers.scaling.kubernetes import ManifestOptions

    script = (ROOT / "compose/scripts/start-worker.sh").read_text()
    assert re.search(r"^exec celery -A config worker ", script, re.MULTILINE)
    for name, worker in worker_services(compose).items():
        grace = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
        assert grace and int(grace[1]) == ManifestOptions().grace_seconds, name
        assert "stop_signal" not in worker, name


def test_flower_publishes_5555_with_basic_auth_from_the_environment_and_starts_after_the_workers(compose):
    """Flower publishes 5555, takes FLOWER_BASIC_AUTH from the environment and
    is started by a script that waits for workers to answer ping."""
    flower = compose["services"]["flower"]
    assert published(flower) == {5555}
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH")
    assert flower["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"
    assert "worker-default" in flower["depends_on"]
    script = (ROOT / flower["command"][0]).read_text()
    assert "inspect ping" in script


def test_every_start_script_is_strict_and_execs_its_process(compose):
    """Each role's start script exists, is executable, uses strict shell options and
    ends by exec-ing its process (so signals reach it)."""
    for name in ("worker-orders", "flower", "metrics", "alerts"):
        script = ROOT / compose["services"][name]["command"][0]
        assert script.exists() and script.stat().st_mode & 0o111, script
        text = script.read_text()
        assert "set -euo pipefail" in text
        assert re.search(r"^exec ", text, re.MULTILINE), script


def test_the_topology_is_not_repeated_in_a_broker_definitions_file(compose):
    """Workers declare the topology; RabbitMQ loads no definitions file."""
    rabbitmq = compose["services"]["rabbitmq"]
    mounted = " ".join(str(volume) for volume in rabbitmq.get("volumes", []))
    settings = " ".join(f"{key}={value}" for key, value in rabbitmq.get("environment", {}).items())
    assert "definitions" not in mounted and "definitions" not in settings
    assert "configs" not in compose and "configs" not in rabbitmq
    assert not list(COMPOSE.rglob("*.json"))


def test_the_dockerfile_builds_from_python_3_11_slim_and_installs_the_project():
    """One image: python:3.11-slim with `pip install .`."""
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip install ." in dockerfile
    ignored = Path(str(COMPOSE / "Dockerfile") + ".dockerignore")
    assert ignored.exists()


def test_a_worker_container_runs_one_process_of_the_layout_and_the_replicas_are_the_processes(
    compose, tmp_path: Path
):
    """The worker role's start script execs ``celery worker`` with the layout's
    options for one process (default: solo, one slot, a window of 2) and the
    container's queue; each worker service runs 2 replicas, as ``make up``
    runs 2 processes per queue. A fake ``celery`` on PATH records the command."""
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "celery").write_text('#!/bin/sh\necho "$@" > "$CELERY_ARGS"\n')
    (bin_dir / "celery").chmod(0o755)
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CELERY_ARGS": str(tmp_path / "args"),
        "WORKER_QUEUES": "orders",
        "HOSTNAME": "box1",
    }
    env.pop("PLATFORM_WORKER_LAYOUT", None)
    env.pop("PLATFORM_WORKER_PREFETCH", None)
    done = subprocess.run(
        ["bash", "compose/scripts/start-worker.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "args").read_text().split() == [
        "-A", "config", "worker", "-l", "info", "-n", "worker@box1",
        "-P", "solo", "-c", "1", "--prefetch-multiplier", "2", "-Q", "orders",
    ]  # fmt: skip
    assert {service["deploy"]["replicas"] for service in worker_services(compose).values()} == {2}
