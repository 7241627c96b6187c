"""The compose pool: count and resize a queue's workers with ``docker compose``.

No Docker engine runs here and the ``docker`` client has no compose plugin,
so ``docker`` on PATH is tests/support/fake_docker.py: it records each argv,
answers ``ps --format json`` from a state file and applies ``up --scale`` to
it, refusing services the real compose file does not have. This mocks only
what cannot exist here; the commands and the file are the real ones.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.support.worker import ROOT
from workers.scaling.compose import ComposeError, ComposePool, parse_ps

COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"


class FakeDocker:
    """The fake ``docker`` on PATH, its state (the containers) and the argv it was run with."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        bin_dir = folder / "bin"
        bin_dir.mkdir()
        script = bin_dir / "docker"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT}/tests/support/fake_docker.py" "$@"\n')
        script.chmod(0o755)
        self.state = folder / "state.json"
        self.log = folder / "argv.jsonl"
        self.containers([])
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_DOCKER_STATE", str(self.state))
        monkeypatch.setenv("FAKE_DOCKER_LOG", str(self.log))

    def containers(self, containers: list[dict[str, str]], ps_format: str = "lines") -> None:
        self.state.write_text(json.dumps({"containers": containers, "ps_format": ps_format}))

    def running(self, service: str) -> list[str]:
        state = json.loads(self.state.read_text())
        return sorted(
            c["Name"] for c in state["containers"] if c["Service"] == service and c["State"] == "running"
        )

    def commands(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    return FakeDocker(tmp_path, monkeypatch)


def container(service: str, number: int, state: str = "running") -> dict[str, str]:
    return {"Service": service, "Name": f"rabbit-platform-{service}-{number}", "State": state}


def test_workers_counts_the_running_containers_of_the_queues_own_service(docker: FakeDocker) -> None:
    """Given two running and one exited orders worker and a payments worker, orders has 2
    workers; the command is `docker compose -f FILE ps --format json worker-orders`."""
    docker.containers(
        [
            container("worker-orders", 1),
            container("worker-orders", 2),
            container("worker-orders", 3, "exited"),
            container("worker-payments", 1),
        ]
    )
    pool = ComposePool(COMPOSE_FILE)
    assert pool.workers("orders") == 2
    assert pool.workers("email.events") == 0
    assert docker.commands()[0] == [
        "compose",
        "-f",
        str(COMPOSE_FILE),
        "ps",
        "--format",
        "json",
        "worker-orders",
    ]


def test_workers_reads_the_json_array_of_older_compose_versions(docker: FakeDocker) -> None:
    docker.containers([container("worker-orders", 1), container("worker-orders", 2)], ps_format="array")
    assert ComposePool(COMPOSE_FILE).workers("orders") == 2


def test_resize_scales_the_service_up_without_recreating_its_running_containers(docker: FakeDocker) -> None:
    """Given one orders worker, when the pool is resized to 3, then Compose was asked for
    `up -d --no-recreate --scale worker-orders=3 worker-orders` and 3 run, the first one kept."""
    docker.containers([container("worker-orders", 1), container("worker-payments", 1)])
    pool = ComposePool(COMPOSE_FILE, project="shop")
    pool.resize("orders", 3, "backlog 5,000 > 1,000: +2 (1 -> 3)")
    assert docker.commands()[-1] == [
        "compose", "-f", str(COMPOSE_FILE), "-p", "shop",
        "up", "-d", "--no-recreate", "--scale", "worker-orders=3", "worker-orders",
    ]  # fmt: skip
    assert docker.running("worker-orders") == [
        "rabbit-platform-worker-orders-1",
        "shop-worker-orders-2",
        "shop-worker-orders-3",
    ]
    assert docker.running("worker-payments") == ["rabbit-platform-worker-payments-1"]
    assert pool.workers("orders") == 3


def test_resize_down_and_to_zero_for_a_subscriber_queue(docker: FakeDocker) -> None:
    """A subscriber queue's service is worker-<service>-events; it goes from 2 to 1 to 0."""
    docker.containers([container("worker-email-events", 1), container("worker-email-events", 2)])
    pool = ComposePool(COMPOSE_FILE)
    pool.resize("email.events", 1, "down")
    assert pool.workers("email.events") == 1
    pool.resize("email.events", 0, "idle")
    assert pool.workers("email.events") == 0
    assert docker.commands()[-2][-2:] == ["worker-email-events=0", "worker-email-events"]


def test_a_queue_without_a_service_in_the_compose_file_is_one_line(docker: FakeDocker) -> None:
    with pytest.raises(ComposeError) as caught:
        ComposePool(COMPOSE_FILE).resize("billing", 2, "up")
    assert str(caught.value) == (
        f"docker compose -f {COMPOSE_FILE} up -d --no-recreate --scale worker-billing=2 worker-billing"
        " failed (exit 1): no such service: worker-billing"
    )


def test_a_docker_engine_that_is_down_is_one_line_naming_the_command(
    docker: FakeDocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    with pytest.raises(
        ComposeError,
        match=r"^docker compose -f .* ps --format json worker-orders failed \(exit 1\): Cannot connect to the Docker daemon",
    ):
        ComposePool(COMPOSE_FILE).workers("orders")


def test_no_docker_client_is_one_line() -> None:
    pool = ComposePool(COMPOSE_FILE, docker="/nonexistent/docker")
    with pytest.raises(ComposeError, match=r"^no '/nonexistent/docker' client to run: compose -f "):
        pool.workers("orders")


def test_a_negative_size_is_refused_before_docker_runs(docker: FakeDocker) -> None:
    with pytest.raises(ValueError, match="at least 0"):
        ComposePool(COMPOSE_FILE).resize("orders", -1, "bug")
    assert docker.commands() == []


@pytest.mark.parametrize(
    ("output", "count"),
    [("", 0), ("[]", 0), ('{"Service": "a"}\n{"Service": "b"}\n', 2), ('[{"Service": "a"}]', 1)],
)
def test_ps_output_of_either_shape_is_read(output: str, count: int) -> None:
    assert len(parse_ps(output)) == count


@pytest.mark.parametrize("output", ["NAME  IMAGE", '{"Service": ', '"text"', "[1, 2]"])
def test_ps_output_that_is_not_json_containers_is_one_error(output: str) -> None:
    with pytest.raises(ComposeError, match="docker compose ps printed"):
        parse_ps(output)
