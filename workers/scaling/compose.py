"""A :class:`~workers.scaling.pool.Pool` on Docker Compose: one service per queue, scaled with ``docker compose``.

::

    workers(q)           docker compose -f FILE [-p P] ps --format json worker-<q>
                         -> the service's containers that are running
    resize(q, n, why)    docker compose -f FILE [-p P] up -d --no-recreate --scale worker-<q>=n worker-<q>

Each queue has its own service ``worker-<queue>`` (compose/docker-compose.yml;
dots and underscores become dashes, as in :func:`workers.scaling.names.worker_name`).
``--no-recreate`` leaves the running containers alone: scaling up only adds
some. Scaling down, Compose stops the surplus containers with SIGTERM,
which reaches Celery (the start script execs it): a warm shutdown, which
finishes the running tasks within the service's ``stop_grace_period``
before Compose kills what is left. So ``up`` can take that long, and
:attr:`ComposePool.timeout` must be longer.

``docker compose ps --format json`` prints one JSON object per line since
Compose 2.21 and one JSON array before; both are read. A ``docker`` that
is missing, fails, or answers something else raises :class:`ComposeError`
with one line naming the command.

The autoscaler runs where ``docker compose`` works on the project (the host,
usually), not inside the project: a container would need the Docker socket,
which is root on the host.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workers.scaling.names import worker_name
from workers.scaling.pool import Pool, PoolUnavailable

logger = logging.getLogger(__name__)

#: Runs one command and returns it finished (``subprocess.run``'s shape).
Runner = Callable[..., "subprocess.CompletedProcess[str]"]
#: Seconds ``ps`` may take.
PS_TIMEOUT = 60.0
#: Seconds ``up --scale`` may take by default: past the worker services' 300 s
#: ``stop_grace_period`` (a scale-down waits for the warm shutdowns).
UP_TIMEOUT = 420.0


class ComposeError(PoolUnavailable):
    """``docker compose`` is missing, failed, or answered something this pool can't read."""


class ComposePool(Pool):
    """The workers of each queue as the containers of its Compose service ``worker-<queue>``."""

    def __init__(
        self,
        compose_file: Path,
        project: str = "",
        docker: str = "docker",
        timeout: float = UP_TIMEOUT,
        run: Runner = subprocess.run,
    ) -> None:
        """
        Args:
            compose_file: the Compose file with one ``worker-<queue>`` service per queue.
            project: the Compose project name; empty: the file's own ``name:``.
            docker: the ``docker`` client to run.
            timeout: seconds one resize may take (longer than the services' stop grace period).
            run: runs a command (``subprocess.run``).
        """
        self.compose_file = compose_file
        self.project = project
        self.docker = docker
        self.timeout = timeout
        self._run = run

    def service(self, queue: str) -> str:
        """The Compose service that runs ``queue``'s workers."""
        return worker_name(queue)

    def workers(self, queue: str) -> int:
        """Running containers of ``queue``'s service.

        Raises:
            ComposeError: ``docker compose ps`` failed or printed something else than JSON.
        """
        service = self.service(queue)
        output = self._compose(["ps", "--format", "json", service], PS_TIMEOUT)
        return sum(
            1
            for container in parse_ps(output)
            if container.get("Service") == service and str(container.get("State", "")).lower() == "running"
        )

    def resize(self, queue: str, desired: int, reason: str) -> None:
        """Run ``desired`` containers of ``queue``'s service (Compose adds or stops the difference).

        Raises:
            ValueError: ``desired`` is negative.
            ComposeError: ``docker compose up`` failed or took longer than :attr:`timeout`.
        """
        if desired < 0:
            raise ValueError(f"desired workers must be at least 0, got {desired}")
        service = self.service(queue)
        logger.info("compose: %s -> %d containers (%s)", service, desired, reason)
        self._compose(["up", "-d", "--no-recreate", "--scale", f"{service}={desired}", service], self.timeout)

    def _compose(self, args: Sequence[str], timeout: float) -> str:
        command = [self.docker, "compose", "-f", str(self.compose_file)]
        if self.project:
            command += ["-p", self.project]
        command += args
        shown = " ".join(command[1:])
        try:
            done = self._run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise ComposeError(f"no {self.docker!r} client to run: {shown}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(f"docker {shown} took longer than {timeout:g} s") from exc
        if done.returncode != 0:
            last = (done.stderr or done.stdout or "").strip().splitlines()
            detail = last[-1] if last else "no output"
            raise ComposeError(f"docker {shown} failed (exit {done.returncode}): {detail}")
        return done.stdout


def parse_ps(output: str) -> list[dict[str, Any]]:
    """The containers ``docker compose ps --format json`` printed: a JSON array, or one object a line.

    Raises:
        ComposeError: the output is not JSON of either shape.
    """
    text = output.strip()
    if not text:
        return []
    try:
        if text.startswith("["):
            containers = json.loads(text)
        else:
            containers = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ComposeError(f"docker compose ps printed something else than JSON: {text[:80]!r}") from exc
    if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
        raise ComposeError(f"docker compose ps printed JSON of another shape: {text[:80]!r}")
    return containers


def compose_pool(compose_file: str, project: str = "") -> ComposePool:
    """The pool of ``PLATFORM_COMPOSE_FILE`` / ``PLATFORM_COMPOSE_PROJECT`` (``settings.compose_*``)."""
    return ComposePool(Path(compose_file), project)
