"""Launch Flower for the platform: ``python -m workers.ops.flower``.

Flower listens on ``FLOWER_ADDRESS:FLOWER_PORT`` (loopback by default), watches
the broker of ``CELERY_BROKER_URL``, and fills its broker page from the
RabbitMQ management API (``PLATFORM_MANAGEMENT_URL``). ``FLOWER_BASIC_AUTH``
(``user:password``, comma separated for several users) turns on HTTP basic auth.

Flower has no authentication by default, and its pages can revoke tasks and
shut workers down, so listening on any address other than loopback without
basic auth is refused. The decision is the pure :func:`plan_flower`; only
:func:`main` touches the process (it ``exec``s Flower).

:func:`main` runs Flower's options with ``python -m workers.ops.flower.server``
instead of ``celery flower``: the same Flower, plus the platform's dead-letter
page and a broker page that lists retry and dead-letter queues.

Flower's own ``/api/*`` answers 401 unless auth is configured or
``FLOWER_UNAUTHENTICATED_API`` is set (Flower reads that variable itself).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from config.settings import ENVIRONMENT_NAMES, Settings, SettingsError, load_settings

#: Host names that always mean this machine.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

#: Flower's variables that only :func:`plan_flower` sets.
PLANNED_VARIABLES = frozenset({"FLOWER_BROKER_API", "FLOWER_BASIC_AUTH"})

#: Exit code when the launch is refused (unsafe address, bad setting).
EXIT_REFUSED = 2

#: Runs Flower with the platform pages; takes the options ``celery flower`` takes.
PLATFORM_FLOWER = ("-m", "workers.ops.flower.server")


class FlowerRefused(ValueError):
    """Flower must not start with these settings; the message says why and what to set."""


def is_loopback(address: str) -> bool:
    """Whether ``address`` can only be reached from this machine.

    Args:
        address: an IP address (``[::1]`` brackets allowed) or a host name.
            The empty string means "every interface" to Flower, so it is not
            loopback; neither is any host name but ``localhost``.

    Returns:
        True for 127.0.0.0/8, ::1 and ``localhost``.
    """
    host = address.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class FlowerLaunch:
    """How to run Flower: the command, and variables added to its environment."""

    #: The argv for ``os.execvpe``: ``python -m workers.ops.flower.server ...`` (Flower
    #: with the platform's pages; it takes ``celery flower``'s options).
    argv: tuple[str, ...]
    #: Secrets go to Flower through its own ``FLOWER_*`` variables, not the
    #: command line, so ``ps`` does not show them.
    environ: Mapping[str, str]


def plan_flower(settings: Settings, python: str = "python") -> FlowerLaunch:
    """Decide how Flower runs for ``settings``, or refuse.

    Args:
        settings: the platform settings (address, port, auth, management API).
        python: the interpreter that runs Flower.

    Returns:
        The launch: Flower on ``flower_address:flower_port`` with
        ``--persistent=False``, its broker page fed by ``management_url``
        (``FLOWER_BROKER_API``) and basic auth from ``flower_basic_auth``
        (``FLOWER_BASIC_AUTH``) when set.

    Raises:
        FlowerRefused: the address is not loopback and no basic auth is set.
    """
    address_variable = ENVIRONMENT_NAMES["flower_address"]
    auth_variable = ENVIRONMENT_NAMES["flower_basic_auth"]
    if not settings.flower_basic_auth and not is_loopback(settings.flower_address):
        raise FlowerRefused(
            f"refusing to start Flower on {settings.flower_address or 'every interface'!r} without "
            f"authentication: anyone who reaches it can revoke tasks and shut workers down. "
            f"Set {auth_variable}=user:password, or listen on loopback only "
            f"({address_variable}=127.0.0.1)."
        )
    argv = (
        python, *PLATFORM_FLOWER,
        f"--address={settings.flower_address}",
        f"--port={settings.flower_port}",
        "--persistent=False",
    )  # fmt: skip
    # Flower reads FLOWER_<option> for every option it defines (flower.command
    # apply_env_options); --broker_api and --basic_auth would carry passwords.
    # Flower takes one management API: the first node of a cluster's list.
    environ = {"FLOWER_BROKER_API": settings.management_url.split(";")[0]}
    if settings.flower_basic_auth:
        environ["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth
    return FlowerLaunch(argv, environ)


def main(argv: Sequence[str] | None = None) -> int:
    """Check the settings, then replace this process with Flower.

    Returns:
        An exit code, only when Flower is not started (it never returns otherwise).
    """
    del argv  # no options of its own: everything comes from the environment
    try:
        launch = plan_flower(load_settings(), python=sys.executable)
    except (FlowerRefused, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    sys.stdout.flush()
    # Only the plan decides Flower's secrets: an empty FLOWER_BASIC_AUTH left in
    # the environment would otherwise turn on auth with no valid user.
    environ = {name: value for name, value in os.environ.items() if name not in PLANNED_VARIABLES}
    os.execvpe(launch.argv[0], launch.argv, {**environ, **launch.environ})
    return 0  # pragma: no cover - execvpe does not return
