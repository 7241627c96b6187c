"""A small client of RabbitMQ's management HTTP API: one call, several nodes tried in turn.

The API root comes as the settings spell it: ``http(s)://user:password@host:port/api/``,
or several joined by ``;`` (every node of a cluster). The credentials in the
URL become basic auth; an ``https://`` root is verified with the context the
caller passes (:func:`config.tls.https_context`: the broker's CA and client
certificate), else with the system's CAs. Errors never show a password.

See https://www.rabbitmq.com/docs/management#http-api for the paths.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ManagementError(RuntimeError):
    """The management API could not be reached or answered with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status of a node that answered with an error (the last one tried), else None.
        self.status = status


def split_root(root: str) -> tuple[str, str, str]:
    """``root`` as (URL without credentials, user, password); ``guest`` for what it lacks."""
    parsed = urllib.parse.urlsplit(root.strip())
    user = urllib.parse.unquote(parsed.username or "guest")
    password = urllib.parse.unquote(parsed.password or "guest")
    host = parsed.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    bare = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, ""))
    return bare.rstrip("/"), user, password


def call(
    roots: str,
    method: str,
    path: str,
    body: Any = None,
    timeout: float = 5.0,
    context: ssl.SSLContext | None = None,
    user: tuple[str, str] | None = None,
) -> Any:
    """``method`` ``/api/<path>`` on the first node of ``roots`` that answers; its JSON, or None.

    Args:
        roots: one API root or several joined by ``;``.
        path: the path below the root, already quoted (``queues/my%2Fvhost``).
        body: sent as JSON when not None.
        context: verifies an ``https://`` root (None: the system's CAs).
        user: (name, password) to call as, instead of the URL's credentials.

    Raises:
        ManagementError: no node answered with success (its ``status``: the
            last HTTP error status, if a node answered with one).
    """
    problems = []
    status: int | None = None
    for root in roots.split(";"):
        bare, name, password = split_root(root)
        if user is not None:
            name, password = user
        request = urllib.request.Request(
            f"{bare}/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
        )
        token = base64.b64encode(f"{name}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        where = urllib.parse.urlsplit(bare).netloc
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            problems.append(
                f"management API at {where}: HTTP {exc.code} for {method} /{path.partition('?')[0]}"
            )
            continue
        except (OSError, ValueError) as exc:
            problems.append(f"management API at {where}: {_reason(exc)}")
            continue
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            problems.append(f"management API at {where}: the answer is not JSON")
    raise ManagementError("; ".join(problems), status)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"TLS: its certificate was not accepted ({reason.verify_message}); check PLATFORM_BROKER_TLS_CA"
        )
    return str(reason or exc)
