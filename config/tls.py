"""TLS to the broker, from the settings: what py-amqp is given, and what https clients verify with.

An ``amqps://`` broker URL turns TLS on (port 5671 unless the URL says
otherwise); ``PLATFORM_BROKER_TLS_*`` say what to trust and what to present
(:mod:`config.settings` checked the files when it loaded them). The one
description here reaches every connection the platform opens:

- Celery's ``broker_use_ssl`` (:mod:`config.app`), hence the workers, the
  publishers and every tool that connects through the app;
- :func:`workers.broker.kombu_connection` and :func:`workers.broker.amqp_connection`
  (the tools that take a URL, and raw py-amqp for pipelined confirms);
- the management API client, when its URL is ``https://`` (:func:`https_context`).

py-amqp's options (``amqp.transport.SSLTransport``): ``ca_certs``, ``certfile``,
``keyfile``, ``cert_reqs``; ``server_hostname: None`` asks kombu to fill in the
host of the URL it connects to, and turns host-name checking on. kombu fills
it in once per options dict, so on a failover list every node's certificate
must name the host of the first node a process reaches (a wildcard, or one
certificate naming all nodes); :func:`workers.broker.amqp_connection` checks
each node's own name.
"""

from __future__ import annotations

import ssl
from typing import Any

from config.settings import Settings, uses_tls


def broker_ssl_options(settings: Settings) -> dict[str, Any] | None:
    """The ``ssl`` options for py-amqp (Celery's ``broker_use_ssl``), or None without TLS.

    A new dict on every call: kombu writes the server name into the one it is given.
    """
    if not uses_tls(settings.broker_url):
        return None
    options: dict[str, Any] = {}
    if settings.broker_tls_ca:
        options["ca_certs"] = settings.broker_tls_ca
    if settings.broker_tls_cert:
        options["certfile"] = settings.broker_tls_cert
        options["keyfile"] = settings.broker_tls_key or None
    if settings.broker_tls_verify:
        options["cert_reqs"] = ssl.CERT_REQUIRED
        options["server_hostname"] = None  # kombu: the URL's host
    else:
        # Without a server name py-amqp turns host-name checking off, as CERT_NONE needs.
        options["cert_reqs"] = ssl.CERT_NONE
    return options


def https_context(settings: Settings) -> ssl.SSLContext | None:
    """The context that verifies an ``https://`` management API (the broker's CA, certificate, verify).

    None when no management URL is ``https://`` (nothing to verify).
    """
    if not any(url.strip().lower().startswith("https://") for url in settings.management_url.split(";")):
        return None
    context = ssl.create_default_context(cafile=settings.broker_tls_ca or None)
    if settings.broker_tls_cert:
        context.load_cert_chain(settings.broker_tls_cert, settings.broker_tls_key or None)
    if not settings.broker_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
