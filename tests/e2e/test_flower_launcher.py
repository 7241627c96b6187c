"""``python -m workers.ops.flower``: loopback unless basic auth is configured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings
from tests.e2e.conftest import e2e_environment, free_port, http_status
from tests.support.worker import ROOT
from workers.ops.flower.launcher import FlowerRefused, is_loopback, plan_flower


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("192.168.1.20", False),
        ("flower.example.com", False),
    ],
)
def test_only_127_slash_8_ipv6_loopback_and_localhost_count_as_loopback(address: str, loopback: bool):
    """Addresses only this machine can reach are loopback; every other address or name is not."""
    assert is_loopback(address) is loopback


def test_the_plan_refuses_a_public_address_without_basic_auth_and_names_both_settings():
    """Given FLOWER_ADDRESS=0.0.0.0 and no FLOWER_BASIC_AUTH, planning Flower fails with both names."""
    with pytest.raises(FlowerRefused) as refused:
        plan_flower(Settings(flower_address="0.0.0.0"))
    assert "FLOWER_ADDRESS" in str(refused.value) and "FLOWER_BASIC_AUTH" in str(refused.value)


def test_the_plan_passes_address_port_and_keeps_secrets_off_the_command_line():
    """The plan runs `celery -A config flower` on the configured address and port,
    non-persistent, with the management API and basic auth given through Flower's
    own variables, so `ps` shows no password."""
    settings = Settings(
        flower_address="0.0.0.0",
        flower_port=5601,
        flower_basic_auth="ops:pw",
        management_url="http://guest:guest@rabbit:15672/api/",
    )
    launch = plan_flower(settings, python="/venv/bin/python")
    assert launch.argv[:3] == ("/venv/bin/python", "-m", "workers.ops.flower.server")
    assert {"--address=0.0.0.0", "--port=5601", "--persistent=False"} <= set(launch.argv)
    assert not any("guest" in arg or "pw" in arg for arg in launch.argv)
    assert launch.environ == {
        "FLOWER_BROKER_API": "http://guest:guest@rabbit:15672/api/",
        "FLOWER_BASIC_AUTH": "ops:pw",
    }
    assert "FLOWER_BASIC_AUTH" not in plan_flower(Settings()).environ


@pytest.mark.e2e
def test_the_launcher_refuses_to_listen_on_all_interfaces_without_basic_auth(tmp_path: Path):
    """Given FLOWER_ADDRESS=0.0.0.0 and no FLOWER_BASIC_AUTH, `python -m workers.ops.flower`
    exits non-zero at once, naming both settings, and nothing listens."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "FLOWER_ADDRESS": "0.0.0.0",
        "FLOWER_PORT": str(port),
        "PLATFORM_STATE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "workers.ops.flower"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FLOWER_ADDRESS" in result.stderr and "FLOWER_BASIC_AUTH" in result.stderr
    assert "refusing" in result.stderr
    assert http_status(f"http://127.0.0.1:{port}/healthcheck") is None


@pytest.mark.e2e
@pytest.mark.broker
def test_the_launcher_listens_on_all_interfaces_when_basic_auth_is_set(vhost, tmp_path: Path, start_flower):
    """Given FLOWER_ADDRESS=0.0.0.0 with FLOWER_BASIC_AUTH, Flower starts and asks for credentials."""
    env = e2e_environment(vhost, tmp_path, FLOWER_ADDRESS="0.0.0.0", FLOWER_BASIC_AUTH="ops:s3cret")
    flower = start_flower(env)
    assert http_status(f"{flower.url}/workers") == 401
    assert http_status(f"{flower.url}/workers", auth=("ops", "s3cret")) == 200
    command = Path(f"/proc/{flower.process.pid}/cmdline").read_bytes().decode()
    assert "s3cret" not in command and "guest" not in command
