"""TLS end to end: a private RabbitMQ node with a TLS listener, certificates from a CA made here.

The node (tests/support/tls_node.py) wants a client certificate on its TLS
port, so every passing connection also proves the platform presented
``PLATFORM_BROKER_TLS_CERT``. It starts once for the module and is killed and
removed at the end; under ``CI=true`` a node that can't start fails the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.app import create_app
from config.settings import load_settings
from config.tls import broker_ssl_options, https_context
from tests.support.broker import in_ci
from tests.support.cli import run_cli
from tests.support.ledger import events
from tests.support.tls import Authority, make_ca, openssl_missing
from tests.support.tls_node import TlsNode, start_tls_node, stop_tls_node
from tests.support.wait import wait_for
from tests.support.worker import ROOT, WorkerProcess, platform_environment
from workers.broker import amqp_connection, require_queue, settings_connection
from workers.errors import PublishError
from workers.ops.cli.common import EXIT_BROKER_UNREACHABLE
from workers.ops.cluster.nodes import ctl
from workers.ops.queue_stats import fetch_queues

pytestmark = pytest.mark.broker

#: What ``celery -A config dlq list`` says when the broker's certificate is not accepted.
REJECTED = "TLS: the broker's certificate was not accepted"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    problem = openssl_missing()
    if problem:
        if in_ci():
            pytest.fail(f"CI=true and openssl is required: {problem}")
        pytest.skip(problem)
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, authority: Authority) -> Iterator[TlsNode]:
    from workers.ops.cluster.nodes import ClusterError

    folder = tmp_path_factory.mktemp("tls-node")
    try:
        node = start_tls_node(folder, authority)
    except ClusterError as exc:
        from tests.support.tls_node import TLS_NODE_PORT
        from workers.ops.cluster.layout import Layout

        stop_tls_node(Layout(folder.resolve(), TLS_NODE_PORT))
        if in_ci():
            pytest.fail(f"CI=true and the private TLS node is required: {exc}")
        pytest.skip(f"the private TLS node can't start here: {exc}")
    print(f"\nTLS node up in {node.started_in:.1f}s")
    yield node
    stop_tls_node(node.layout)


def tls_environment(node: TlsNode, authority: Authority, tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A platform process's environment on the TLS node as the platform user, with the client certificate."""
    tls = {
        "PLATFORM_MANAGEMENT_URL": node.management_url(),
        "PLATFORM_BROKER_TLS_CA": str(authority.ca),
        "PLATFORM_BROKER_TLS_CERT": str(authority.client_cert),
        "PLATFORM_BROKER_TLS_KEY": str(authority.client_key),
    }
    return platform_environment(node.amqps_url(), tmp_path, **{**tls, **overrides})


def test_a_worker_consumes_over_tls_and_a_task_round_trip_completes(
    tls_node: TlsNode, authority: Authority, tmp_path: Path
) -> None:
    """Given amqps:// and the CA, certificate and key, when a worker runs and a task is sent,
    then the task runs, and the broker sees only TLS connections with our client certificate."""
    env = tls_environment(tls_node, authority, tmp_path)
    settings = load_settings(env)
    worker = WorkerProcess(env, tmp_path, "orders", concurrency=1, pool="solo").start()
    app = create_app(settings, main="tls-client")
    try:
        result = app.send_task("tests.ok", args=["over tls"], queue="orders")
        wait_for(
            lambda: events(tmp_path / "ledger.txt", "done", result.id), message="the task to run over TLS"
        )

        # What the broker itself says about its connections (the management API's lag by seconds).
        listed = ctl(tls_node.layout, tls_node.node, "list_connections", "port", "ssl", "peer_cert_subject",
                     "--formatter", "json")  # fmt: skip
        with settings_connection(settings) as connection:
            orders = require_queue(connection, "orders")
        # The management API over https, verified with the same CA and client certificate.
        names = wait_for(
            lambda: {
                q["name"]
                for q in fetch_queues(settings.management_url, "platform", context=https_context(settings))
            },
            timeout=15,
            message="the management API (https) to list the queues",
        )
    finally:
        app.close()
        worker.stop()
    assert listed.returncode == 0, listed.stderr
    connections = json.loads(listed.stdout)
    assert connections, "the broker lists no connection"
    assert {c["port"] for c in connections} == {tls_node.amqps_port}
    assert all(c["ssl"] for c in connections)
    assert all("CN=platform" in str(c["peer_cert_subject"]) for c in connections)
    assert orders.consumers >= 1
    assert {"orders", "orders.dlq"} <= names


def test_the_command_line_tools_work_over_tls(
    tls_node: TlsNode, authority: Authority, tmp_path: Path
) -> None:
    env = tls_environment(tls_node, authority, tmp_path)

    declared = run_cli(env, "topology", "declare")
    listed = run_cli(env, "dlq", "list")

    assert declared.returncode == 0, declared.stderr
    assert declared.stdout.startswith("declared ")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:3]] == ["orders", "payments"]
    assert "missing" not in listed.stdout


def test_a_wrong_ca_is_one_line_with_exit_code_3_and_no_traceback(
    tls_node: TlsNode, authority: Authority, tmp_path: Path
) -> None:
    """Given a CA that did not sign the broker's certificate, when an operator runs a tool,
    then one line says the certificate was not accepted, and the exit code is 3."""
    env = tls_environment(tls_node, authority, tmp_path, PLATFORM_BROKER_TLS_CA=str(authority.other_ca))

    listed = run_cli(env, "dlq", "list")

    assert listed.returncode == EXIT_BROKER_UNREACHABLE, listed.stderr
    lines = listed.stderr.strip().splitlines()
    assert lines == [
        f"error: broker unreachable at amqps://platform:**@localhost:{tls_node.amqps_port}/platform: "
        f"{REJECTED} (self-signed certificate in certificate chain); "
        "check PLATFORM_BROKER_TLS_CA and the host name in the URL"
    ]
    assert tls_node.password not in listed.stderr + listed.stdout


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"CELERY_BROKER_URL": "127.0.0.2"},
            f"{REJECTED} (IP address mismatch, certificate is not valid for '127.0.0.2'.)",
            id="an address the certificate does not name",
        ),
        pytest.param(
            {"PLATFORM_BROKER_TLS_CERT": "", "PLATFORM_BROKER_TLS_KEY": ""},
            "TLS handshake failed",
            id="no client certificate where the broker wants one",
        ),
    ],
)
def test_a_failed_tls_handshake_says_why_in_one_line(
    tls_node: TlsNode, authority: Authority, tmp_path: Path, overrides: dict[str, str], expected: str
) -> None:
    env = tls_environment(tls_node, authority, tmp_path)
    if "CELERY_BROKER_URL" in overrides:
        overrides = {"CELERY_BROKER_URL": tls_node.amqps_url(host=overrides["CELERY_BROKER_URL"])}
    settings = load_settings({**env, **overrides})

    with pytest.raises(PublishError) as raised:
        amqp_connection(settings.broker_url, 5.0, broker_ssl_options(settings))

    message = str(raised.value)
    assert expected in message
    assert "\n" not in message and tls_node.password not in message


def test_make_brokers_probe_says_what_is_wrong_with_the_certificate(
    tls_node: TlsNode, authority: Authority, tmp_path: Path
) -> None:
    env = tls_environment(tls_node, authority, tmp_path, PLATFORM_BROKER_TLS_CA=str(authority.other_ca))
    good = tls_environment(tls_node, authority, tmp_path)

    def probe(environ: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "compose/scripts/probe.py", what],
            cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    refused = probe(env, "amqp")
    answered = probe(good, "amqp")
    management = probe(good, "management")

    assert refused.returncode == 2, refused.stderr
    assert REJECTED in refused.stderr
    assert answered.returncode == 0, answered.stderr
    assert management.returncode == 0, management.stderr
    assert "https://localhost:" in management.stdout
