"""The platform's own RabbitMQ user and vhost, so that nothing depends on ``guest``.

RabbitMQ lets ``guest`` log in from loopback only; a worker on another host
needs a user of its own. Both brokers a developer runs give the platform one,
user ``platform`` with vhost ``platform`` and all permissions there:

- the local cluster (``make cluster-up``): its nodes create them at first boot
  (``default_user`` in rabbitmq.conf, :mod:`workers.ops.cluster.layout`);
- the machine's broker (``make broker``): :func:`ensure` creates them through
  the management API, as the administrator of ``PLATFORM_MANAGEMENT_URL``
  (``guest`` on a fresh install). It runs twice fine, and it never resets the
  password of a user that exists: another clone may hold it.

Both keep the password in a file of mode 0600, made once (:func:`stored_password`;
``PLATFORM_BROKER_PASSWORD`` wins for ``make broker``), and write the URLs as
the platform user to an env file of mode 0600 (:func:`write_env_file`), to be
sourced or read by ``PLATFORM_CLUSTER=1``. Nothing here prints a password.

``python -m workers.ops.platform_user`` is what ``make broker`` runs. Exit
codes: 0 the user and vhost are ready, 1 they could not be made (one line says
why), 2 a bad setting.
"""

from __future__ import annotations

import argparse
import os
import secrets
import ssl
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

from workers.broker import masked_url
from workers.ops.management_api import ManagementError, call

#: The platform's user and vhost, on the machine's broker and on the local cluster.
USER = "platform"
VHOST = "platform"
#: Tags of the user ``make broker`` creates: the management API for its own vhost (queue
#: depths for Flower, metrics and the autoscaler), nothing of other vhosts or users.
TAGS = "management"
#: Optional: the platform user's password for ``make broker``, instead of a generated one.
PASSWORD_VARIABLE = "PLATFORM_BROKER_PASSWORD"
#: Files ``make broker`` keeps in ``PLATFORM_RUN_DIR`` (both mode 0600).
PASSWORD_FILE = "platform-broker.password"
ENV_FILE = "platform-broker.env"

Say = Callable[[str], None]


class PlatformUserError(RuntimeError):
    """The platform user or vhost can't be made; the message says why in one line."""


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path``, readable only by its owner from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT
        out.write(text)
    path.chmod(mode)


def stored_password(path: Path) -> str:
    """The password kept in ``path``; made (random, URL-safe) and written with mode 0600 the first time."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(18) + "\n")
    password = path.read_text().strip()
    if not password:
        raise PlatformUserError(f"{path} is empty: delete it to make a new password")
    return password


def platform_password(run_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """The platform user's password for ``make broker``: ``PLATFORM_BROKER_PASSWORD``, else the run dir's file."""
    environ = os.environ if environ is None else environ
    given = environ.get(PASSWORD_VARIABLE, "").strip()
    return given or stored_password(run_dir / PASSWORD_FILE)


def as_user(url: str, user: str, password: str, vhost: str | None = None) -> str:
    """``url`` (or each of a ``;`` list) with ``user:password`` as its credentials, and ``vhost`` as its path."""
    if ";" in url:
        return ";".join(as_user(part, user, password, vhost) for part in url.split(";"))
    parts = urllib.parse.urlsplit(url.strip())
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{_quote(user)}:{_quote(password)}@{host}" + (f":{parts.port}" if parts.port else "")
    path = parts.path if vhost is None else "/" + _quote(vhost)
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def env_text(broker_url: str, management_url: str) -> str:
    """The lines of a platform env file: the broker and management URLs (``KEY=value``)."""
    return f"CELERY_BROKER_URL={broker_url}\nPLATFORM_MANAGEMENT_URL={management_url}\n"


def write_env_file(path: Path, broker_url: str, management_url: str) -> None:
    """Write the platform's URLs (with a password in them) to ``path``, mode 0600."""
    write_private(path, env_text(broker_url, management_url))


def ensure(
    management_url: str,
    password: str,
    say: Say,
    user: str = USER,
    vhost: str = VHOST,
    context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> None:
    """Make ``user`` (with ``password``) and ``vhost`` exist, with all permissions there (idempotent).

    A user that exists is checked, not changed: if ``password`` does not log
    in to the management API as it, that is an error (its password belongs to
    whoever made it).

    Raises:
        PlatformUserError: the administrator in ``management_url`` can't make
            them, the API does not answer, or the user exists with another password.
    """
    user_path = f"users/{_quote(user)}"
    try:
        existing = _get_or_none(management_url, user_path, context, timeout)
        if existing is None:
            call(management_url, "PUT", user_path, {"password": password, "tags": TAGS}, timeout, context)
            say(f"created user {user!r} (tags: {TAGS})")
        else:
            _check_password(management_url, user, password, context, timeout)
        vhost_path = f"vhosts/{_quote(vhost)}"
        if _get_or_none(management_url, vhost_path, context, timeout) is None:
            call(management_url, "PUT", vhost_path, {}, timeout, context)
            say(f"created vhost {vhost!r}")
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        permissions = f"permissions/{_quote(vhost)}/{_quote(user)}"
        if _get_or_none(management_url, permissions, context, timeout) != {
            **everything,
            "user": user,
            "vhost": vhost,
        }:
            call(management_url, "PUT", permissions, everything, timeout, context)
            say(f"granted {user!r} all permissions on vhost {vhost!r}")
    except ManagementError as exc:
        if exc.status in (401, 403) and _usable_as_itself(
            management_url, user, password, vhost, context, timeout
        ):
            # Run as the platform user already (its env file sourced): nothing to make.
            say(f"user {user!r} logs in and sees vhost {vhost!r} (checked as itself)")
            return
        if exc.status in (401, 403):
            raise PlatformUserError(
                f"the management API refused the user of {masked_url(management_url)} "
                f"(HTTP {exc.status}): it must be an administrator to create {user!r}"
            ) from None
        raise PlatformUserError(str(exc)) from None


def _get_or_none(roots: str, path: str, context: ssl.SSLContext | None, timeout: float) -> object:
    """GET ``path``: its JSON, or None when it does not exist (404)."""
    try:
        return call(roots, "GET", path, timeout=timeout, context=context)
    except ManagementError as exc:
        if exc.status == 404:
            return None
        raise


def _usable_as_itself(
    roots: str, user: str, password: str, vhost: str, context: ssl.SSLContext | None, timeout: float
) -> bool:
    """Whether ``user`` logs in to the management API and may use ``vhost`` (it lists only its own)."""
    try:
        visible = call(
            roots, "GET", "vhosts?columns=name", timeout=timeout, context=context, user=(user, password)
        )
    except ManagementError:
        return False
    return isinstance(visible, list) and any(item.get("name") == vhost for item in visible)


def _check_password(
    roots: str, user: str, password: str, context: ssl.SSLContext | None, timeout: float
) -> None:
    try:
        call(roots, "GET", "whoami", timeout=timeout, context=context, user=(user, password))
    except ManagementError as exc:
        if exc.status != 401:
            raise
        raise PlatformUserError(
            f"user {user!r} exists, and the password kept here does not log in as it (another clone "
            f"made it?): set {PASSWORD_VARIABLE} to its password, or delete the user "
            f"(rabbitmqctl delete_user {user}) and run make broker again"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """``make broker``'s step: the platform user and vhost on the broker of the settings, and its env file."""
    parser = argparse.ArgumentParser(
        prog="python -m workers.ops.platform_user",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--user", default=USER, help=f"the user to make (default {USER})")
    parser.add_argument("--vhost", default=VHOST, help=f"its vhost (default {VHOST})")
    args = parser.parse_args(argv)

    from config.settings import SettingsError, load_settings
    from config.tls import https_context

    def say(line: str) -> None:
        print(f"platform-user: {line}", flush=True)

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"platform-user: error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(settings.run_dir)
    try:
        password = platform_password(run_dir)
        ensure(settings.management_url, password, say, args.user, args.vhost, https_context(settings))
    except (PlatformUserError, OSError) as exc:
        print(f"platform-user: error: {exc}", file=sys.stderr)
        return 1
    broker_url = as_user(settings.broker_url, args.user, password, args.vhost)
    management_url = as_user(settings.management_url, args.user, password)
    env_file = run_dir / ENV_FILE
    write_env_file(env_file, broker_url, management_url)
    say(f"{args.user!r} on vhost {args.vhost!r} is ready: {masked_url(broker_url)}")
    say(f"its URLs: {env_file} (mode 0600; set -a; . {env_file}; set +a)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
