"""Small checks the make targets use: read a setting, probe the broker, wait for HTTP.

Run with the project's interpreter from the repository root::

    python compose/scripts/probe.py setting queues          # prints: orders payments ...
    python compose/scripts/probe.py worker-queues           # work queues, the default one, subscriber queues
    python compose/scripts/probe.py worker-processes        # worker processes per queue (the layout's)
    python compose/scripts/probe.py pool-options            # one process's pool, slots and window options
    python compose/scripts/probe.py amqp --wait 60          # 0 reachable, 1 not, 2 refused us
    python compose/scripts/probe.py management --wait 60    # the management API answers
    python compose/scripts/probe.py http URL --wait 30      # URL answers 200
    python compose/scripts/probe.py local-broker            # 0 if the broker URL is this host

Every wait polls with a deadline and prints what it waited for when it gives up.
Exit codes: 0 yes, 1 not reachable, 2 refused (login or vhost), 3 a bad setting
(its one line is on stderr).
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

# Run as a script from anywhere: make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

#: Exit codes: reachable / not (yet) / it refused us; a bad setting (the line naming it is printed).
OK, UNREACHABLE, REFUSED, BAD_SETTING = 0, 1, 2, 3

try:
    from config.settings import Settings, load_settings
except SystemExit:
    # Importing the config package builds the app from the settings; a bad
    # setting has printed its one line there. Say so with a code of its own,
    # so callers don't take it for a broker that refused the login (2).
    sys.exit(BAD_SETTING)


def setting(settings: Settings, name: str) -> str:
    """A setting as shell words (tuples joined by spaces)."""
    value = getattr(settings, name)
    return " ".join(value) if isinstance(value, tuple) else str(value)


def is_local_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in {"localhost", ""}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def amqp_check(settings: Settings) -> tuple[int, str]:
    """Open and close one AMQP connection to the broker (of a failover list: the first that answers)."""
    from config.tls import broker_ssl_options

    tls = broker_ssl_options(settings)
    results = [_amqp_check_one(url, tls) for url in settings.broker_url.split(";")]
    return min(results, key=lambda result: (result[0] != OK, result[0] != REFUSED))


def _amqp_check_one(url: str, tls: dict[str, object] | None) -> tuple[int, str]:
    import ssl

    import amqp
    from kombu import Connection

    from workers.broker import describe_connect_error, open_node

    parsed = Connection(url)
    try:
        open_node(parsed, 3, tls).close()
    except (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed) as exc:
        return REFUSED, f"RabbitMQ at {parsed.as_uri()} refused the login or vhost: {exc}"
    except ssl.SSLCertVerificationError as exc:
        # Waiting won't help: the certificate or PLATFORM_BROKER_TLS_CA is wrong.
        return REFUSED, f"RabbitMQ at {parsed.as_uri()}: {describe_connect_error(exc)}"
    except Exception as exc:  # noqa: BLE001 - any other failure means "not reachable (yet)"
        return UNREACHABLE, f"RabbitMQ is not reachable at {parsed.as_uri()}: {describe_connect_error(exc)}"
    return OK, f"RabbitMQ answers at {parsed.as_uri()}"


def http_check(urls: str, path: str = "", context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """GET ``url`` + ``path`` of each of ``urls`` (joined by ``;``) until one answers (``context``: https)."""
    results = []
    for url in urls.split(";"):
        results.append(_http_check_one(url, path, context))
        if results[-1][0] == OK:
            break
    return min(results, key=lambda result: (result[0] != OK, result[0] != REFUSED))


def _http_check_one(url: str, path: str = "", context: ssl.SSLContext | None = None) -> tuple[int, str]:
    """GET ``url`` + ``path`` (credentials in the URL become basic auth)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    shown = bare + path
    request = urllib.request.Request(bare + path)
    if parts.username:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=3, context=context) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        code = REFUSED if exc.code in (401, 403) else UNREACHABLE
        return code, f"{shown} answered HTTP {exc.code}"
    except Exception as exc:  # noqa: BLE001 - connection refused, timeout, reset...
        return UNREACHABLE, f"{shown} does not answer: {exc!r}"
    return OK, f"{shown} answers"


def wait(check: Callable[[], tuple[int, str]], seconds: float, quiet: bool) -> int:
    """Repeat ``check`` until it passes, it is refused, or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        code, message = check()
        if code != UNREACHABLE or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if code == UNREACHABLE and seconds > 0:
        message += f" (waited {seconds:g}s)"
    if not quiet or code != OK:
        print(message, file=sys.stderr if code else sys.stdout)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "what",
        choices=[
            "setting",
            "worker-queues",
            "worker-processes",
            "pool-options",
            "amqp",
            "management",
            "http",
            "local-broker",
        ],
    )
    parser.add_argument("argument", nargs="?", help="setting name or URL")
    parser.add_argument("--wait", type=float, default=0, help="seconds to keep trying")
    parser.add_argument("--quiet", action="store_true", help="print only failures")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.what == "setting":
        print(setting(settings, args.argument))
        return OK
    if args.what == "worker-queues":
        # Work queues and the default queue (every queue the platform declares
        # for tasks), then each subscribing service's event queue.
        from config.subscriptions import load_subscriptions

        subscribers = [s.queue for s in load_subscriptions(settings.subscriptions_file)]
        print(" ".join([*settings.queues, settings.default_queue, *subscribers]))
        return OK
    if args.what == "worker-processes":
        from config.layout import worker_processes

        print(worker_processes(settings))
        return OK
    if args.what == "pool-options":
        from config.layout import pool_options

        print(" ".join(pool_options(settings)))
        return OK
    if args.what == "local-broker":
        from kombu import Connection

        hosts = [Connection(url).hostname or "" for url in settings.broker_url.split(";")]
        return OK if all(is_local_host(host) for host in hosts) and not settings.cluster else UNREACHABLE
    if args.what == "amqp":
        return wait(lambda: amqp_check(settings), args.wait, args.quiet)
    if args.what == "management":
        from config.tls import https_context

        context = https_context(settings)
        return wait(lambda: http_check(settings.management_url, "overview", context), args.wait, args.quiet)
    return wait(lambda: http_check(args.argument), args.wait, args.quiet)


if __name__ == "__main__":
    sys.exit(main())
