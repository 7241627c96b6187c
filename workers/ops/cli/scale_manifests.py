"""Command line: ``celery -A config scale manifests``.

Prints (or writes to ``--out``) the Kubernetes manifests of
:mod:`workers.scaling.kubernetes`: per work and subscriber queue a worker
Deployment and a KEDA ScaledObject on ``platform_queue_due_backlog``, the
metrics exporter, and a ConfigMap of the settings that differ from their
defaults. Nothing here talks to the broker or to a cluster.

Exit codes:

====  ===========================================================
0     manifests printed or written
2     bad usage (click's code for a bad option)
4     a queue gives no valid Kubernetes name
5     the output folder can't be written
====  ===========================================================
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import click

from config.app import platform_config
from workers.ops.cli.common import app_of, fail
from workers.scaling.kubernetes import SECRET_KEYS, ManifestOptions, QueueScaling, manifest_files
from workers.scaling.limits import limits_for
from workers.scaling.settings_env import changed_settings, sensitive_variables

EXIT_BAD_NAME = 4
EXIT_UNWRITABLE = 5
#: Generated worker files in ``--out``; one whose queue is gone is removed.
WORKER_FILES = "worker-*.yaml"

_defaults = ManifestOptions()
#: A namespace or Secret name Kubernetes accepts (an RFC 1123 label).
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _kubernetes_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _LABEL.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a Kubernetes name (lower-case letters, digits, '-')")
    return value


def _url_without_credentials(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter("must be an http(s) URL")
    if parts.username or parts.password:
        # It would be written into the manifests; KEDA takes credentials from a TriggerAuthentication.
        raise click.BadParameter("must not carry credentials (give KEDA a TriggerAuthentication instead)")
    return value


@click.command(name="manifests")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per object group here (default: print).",
)
@click.option(
    "--image", default=_defaults.image, show_default=True, help="The platform image (compose/Dockerfile)."
)
@click.option("--namespace", default=_defaults.namespace, show_default=True, callback=_kubernetes_name)
@click.option(
    "--prometheus-url",
    default=_defaults.prometheus_url,
    show_default=True,
    callback=_url_without_credentials,
    help="The Prometheus that scrapes the exporter; KEDA queries it.",
)
@click.option(
    "--secret",
    default=_defaults.secret,
    show_default=True,
    callback=_kubernetes_name,
    help=f"Secret with the keys {', '.join(SECRET_KEYS.values())}.",
)
@click.option(
    "--grace-seconds",
    type=click.IntRange(1),
    default=_defaults.grace_seconds,
    show_default=True,
    help="A stopping worker's warm shutdown: longer than your longest task.",
)
@click.option(
    "--polling-interval", type=click.IntRange(1), default=_defaults.polling_interval, show_default=True
)
@click.pass_context
def manifests(
    ctx: click.Context,
    out: Path | None,
    image: str,
    namespace: str,
    prometheus_url: str,
    secret: str,
    grace_seconds: int,
    polling_interval: int,
) -> None:
    """Kubernetes manifests: a worker Deployment and a KEDA ScaledObject per queue, the exporter."""
    platform = platform_config(app_of(ctx))
    settings = platform.settings
    options = ManifestOptions(
        image=image,
        namespace=namespace,
        prometheus_url=prometheus_url,
        secret=secret,
        grace_seconds=grace_seconds,
        polling_interval=polling_interval,
        metrics_port=settings.metrics_port,
    )
    queues = [QueueScaling(name, limits_for(settings, name)) for name in platform.topology.names]
    try:
        files = manifest_files(
            queues, options, changed_settings(settings), sensitive_variables(settings, SECRET_KEYS)
        )
    except ValueError as exc:
        fail(str(exc), EXIT_BAD_NAME)
    if out is None:
        click.echo("".join(files.values()), nl=False)
        return
    try:
        write_files(out, files)
    except OSError as exc:
        fail(f"can't write {out}: {exc.strerror or exc}", EXIT_UNWRITABLE)
    click.echo(f"wrote {len(files)} files to {out} ({len(queues)} queues)")


def write_files(out: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``out``, and remove generated worker files of queues that are gone.

    Raises:
        OSError: the folder or a file can't be written.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.glob(WORKER_FILES)):
        if stale.name not in files:
            stale.unlink()
            click.echo(f"removed {stale} (its queue is no longer in the topology)")
    for name, text in files.items():
        (out / name).write_text(text)
