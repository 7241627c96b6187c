"""The platform user's password and URLs: made once, kept private, written as the platform reads them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from config.settings import CLUSTER_ENV_FILE
from workers.ops.cluster.control import prepare
from workers.ops.cluster.layout import Layout
from workers.ops.platform_user import (
    PASSWORD_FILE,
    PASSWORD_VARIABLE,
    as_user,
    env_text,
    platform_password,
    stored_password,
    write_private,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_password_is_made_once_with_mode_0600_and_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "run" / "password"

    first = stored_password(path)
    second = stored_password(path)

    assert first == second
    assert len(first) >= 20
    assert mode_of(path) == 0o600


def test_an_existing_readable_file_is_made_private_when_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("old")
    path.chmod(0o644)

    write_private(path, "CELERY_BROKER_URL=amqp://u:secret@h//\n")

    assert mode_of(path) == 0o600
    assert path.read_text() == "CELERY_BROKER_URL=amqp://u:secret@h//\n"


def test_platform_broker_password_wins_over_the_file_and_writes_none(tmp_path: Path) -> None:
    assert platform_password(tmp_path, {PASSWORD_VARIABLE: " chosen "}) == "chosen"
    assert not (tmp_path / PASSWORD_FILE).exists()
    made = platform_password(tmp_path, {})
    assert (tmp_path / PASSWORD_FILE).read_text().strip() == made


@pytest.mark.parametrize(
    ("url", "vhost", "expected"),
    [
        (
            "amqp://guest:guest@127.0.0.1:5672//",
            "platform",
            "amqp://platform:p%40ss%2Fw@127.0.0.1:5672/platform",
        ),
        (
            "amqps://guest:guest@rabbit.example/",
            "platform",
            "amqps://platform:p%40ss%2Fw@rabbit.example/platform",
        ),
        ("amqp://127.0.0.1:5672//", "my/vhost", "amqp://platform:p%40ss%2Fw@127.0.0.1:5672/my%2Fvhost"),
        (
            "amqp://g:g@h1:5681/;amqp://g:g@h2:5682/",
            "platform",
            "amqp://platform:p%40ss%2Fw@h1:5681/platform;amqp://platform:p%40ss%2Fw@h2:5682/platform",
        ),
        (
            "https://guest:guest@127.0.0.1:15672/api/",
            None,
            "https://platform:p%40ss%2Fw@127.0.0.1:15672/api/",
        ),
    ],
)
def test_urls_are_rewritten_to_the_platform_user_keeping_scheme_host_and_port(
    url: str, vhost: str | None, expected: str
) -> None:
    assert as_user(url, "platform", "p@ss/w", vhost) == expected


def test_the_env_file_has_the_two_urls_the_settings_read() -> None:
    assert (
        env_text("amqp://a", "http://b") == "CELERY_BROKER_URL=amqp://a\nPLATFORM_MANAGEMENT_URL=http://b\n"
    )


def test_the_cluster_keeps_its_password_and_urls_the_same_way(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "cluster", 5791)

    password = prepare(layout)

    assert prepare(layout) == password
    assert mode_of(layout.credentials_file) == 0o600
    assert mode_of(layout.folder / CLUSTER_ENV_FILE) == 0o600
    assert f"platform:{password}@127.0.0.1:5791/platform" in (layout.folder / CLUSTER_ENV_FILE).read_text()
