"""Command line: ``celery -A config scale run|status`` (a Celery sub-command).

``run`` runs the scaling engine (:mod:`workers.scaling.engine`) in the
foreground: every ``PLATFORM_SCALE_INTERVAL`` seconds it reads each queue's
due backlog, decides, and resizes the pool (``--pool local``: worker
processes on this host, :mod:`workers.scaling.local`). SIGTERM or Ctrl-C
stops it; the local pool's workers get a warm shutdown on the way out. Each
pass's decisions go to the state store (:mod:`workers.ops.scale_state`),
where ``status``, the metrics and Flower read them. ``--dry-run`` prints the
decisions (taking each queue's consumers as its workers) and starts nothing.

``status`` prints, per queue: the due backlog now, the pool's workers and
desired size, and the engine's last decision (its reason and age); a desired
size marked ``*`` is the policy's advice (no engine runs).

====  ===========================================================
0     success (``run``: stopped by SIGTERM or Ctrl-C)
2     bad usage: unknown option, queue or pool; a bad setting
      (``configuration error: ...``, before the command starts)
3     ``status``: the state store could not be read
====  ===========================================================

``kill -USR1`` on a running ``scale run`` prints every thread's stack to its
log (Python's faulthandler), to see where a pass waits.

A broker that does not answer does not stop ``run``: it logs one line and
holds every pool as it is until the broker answers again. Every failure prints
one line ``error: ...`` to stderr, never a traceback and never a password.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import FrameType

import click

from config.app import platform_config
from config.settings import Settings
from config.topology import Topology
from workers.broker import masked_url, settings_connection
from workers.ops import delays
from workers.ops.cli.common import EXIT_USAGE, app_of, emit_json, fail, json_option
from workers.ops.cli.scale_manifests import manifests
from workers.ops.metrics import management_counts
from workers.ops.scale_state import write_decisions
from workers.ops.scale_view import scale_view
from workers.ops.text import age_text
from workers.scaling.engine import Engine, QueueReport
from workers.scaling.limits import limits_for
from workers.scaling.pool import POOLS, Pool, UnknownPool, make_pool

logger = logging.getLogger("workers.scale")

EXIT_STATE_UNREADABLE = 3

#: Printed once the first pass is done (``make up AUTOSCALE=1`` waits for it).
FIRST_PASS_LINE = "scale: first pass done"


@click.group(name="scale")
def scale() -> None:
    """Scale worker pools on queue depth: run the engine, or show where each queue stands."""


def chosen_queues(topology: Topology, wanted: Sequence[str]) -> tuple[str, ...]:
    """The queues to scale: ``wanted`` (each a work or subscriber queue), or all of them."""
    unknown = [queue for queue in wanted if queue not in topology.names]
    if unknown:
        fail(
            f"not a work or subscriber queue: {', '.join(unknown)} (queues: {', '.join(topology.names)})",
            EXIT_USAGE,
        )
    return tuple(dict.fromkeys(wanted)) or tuple(topology.names)


def delayed_due_in(settings: Settings) -> Callable[[], float | None]:
    """Reads seconds until the soonest delayed task falls due (None when none, or unreadable)."""

    def read() -> float | None:
        try:
            with settings_connection(settings) as connection:
                stats = delays.delay_stats(connection, scan_limit=100)
        except Exception as exc:  # noqa: BLE001 - unknown delays only keep a pool from going to zero
            logger.debug("scale: delay levels not read: %s", exc)
            return None
        return stats.next_due_seconds(datetime.now(UTC))

    return read


def state_reporter(
    settings: Settings, pool_name: str, pool: Pool | None
) -> Callable[[Sequence[QueueReport]], None]:
    """Writes each pass's decisions to the state store; a failure is logged once, never fatal."""
    failed: list[str] = []

    def report(reports: Sequence[QueueReport]) -> None:
        restarts: dict[str, int] = getattr(pool, "restarts", {})
        try:
            write_decisions(settings.state_url, reports, pool_name, restarts)
        except Exception as exc:  # noqa: BLE001 - the store is for watching; scaling goes on without it
            if not failed:
                logger.warning("scale: decisions not written to the state store: %s", exc)
            failed[:] = [str(exc)]
            return
        failed.clear()

    return report


@scale.command()
@click.option("--dry-run", is_flag=True, help="Print the decisions; start and stop nothing.")
@click.option("--queue", "queues", multiple=True, metavar="QUEUE", help="Scale only this queue (repeatable).")
@click.option(
    "--pool",
    "pool_name",
    default="local",
    show_default=True,
    help=f"Where the workers run: {', '.join(sorted(POOLS))}.",
)
@click.option("--passes", type=click.IntRange(min=1), help="Stop after N passes (default: until stopped).")
@click.pass_context
def run(
    ctx: click.Context, dry_run: bool, queues: tuple[str, ...], pool_name: str, passes: int | None
) -> None:
    """Run the scaling engine in the foreground until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # SIGUSR1 prints every thread's stack to stderr: where a stuck pass waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    config = platform_config(app_of(ctx))
    settings, topology = config.settings, config.topology
    names = chosen_queues(topology, queues)
    limits = {queue: limits_for(settings, queue) for queue in names}
    pool: Pool | None = None
    if not dry_run:
        try:
            pool = make_pool(pool_name, settings)
        except UnknownPool as exc:
            fail(str(exc), EXIT_USAGE)
    engine = Engine(
        management_counts(settings, topology),
        names,
        pool,
        limits,
        dry_run=dry_run,
        delayed_due_in=delayed_due_in(settings)
        if any(limit.min_workers == 0 for limit in limits.values())
        else None,
        report=state_reporter(settings, pool_name, pool),
        echo=click.echo,
    )
    stop = threading.Event()

    def stop_on(signum: int, frame: FrameType | None) -> None:
        logger.info("scale: %s: stopping", signal.Signals(signum).name)
        stop.set()

    previous = {signum: signal.signal(signum, stop_on) for signum in (signal.SIGTERM, signal.SIGINT)}
    mode = "dry run, nothing is started or stopped" if dry_run else f"pool {pool_name}"
    logger.info(
        "scale: %s on %s, queues %s, a pass every %g s",
        mode, masked_url(settings.broker_url), ", ".join(names), settings.scale_interval,
    )  # fmt: skip
    try:
        engine.step()
        logger.info(FIRST_PASS_LINE)
        if passes != 1:
            engine.run(settings.scale_interval, stop, None if passes is None else passes - 1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        close = getattr(pool, "close", None)
        if close is not None:
            logger.info("scale: stopping the pool's workers (warm shutdown)")
            close()
        logger.info("scale: stopped")


@scale.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per queue: due backlog now, workers, desired, and the engine's last decision."""
    config = platform_config(app_of(ctx))
    settings = config.settings
    try:
        view = scale_view(settings, config.topology)
    except Exception as exc:  # noqa: BLE001 - any store failure is one line
        fail(f"state store not readable at {masked_url(settings.state_url)}: {exc}", EXIT_STATE_UNREADABLE)
    if view.signal_problem:
        click.echo(f"warning: {view.signal_problem}", err=True)
    if as_json:
        emit_json([row.record() for row in view.rows])
        return
    if not view.engine_running:
        click.echo("no scaling engine is running (start one: make autoscale); desired is the policy's advice")
    click.echo(f"{'queue':24} {'due':>8} {'workers':>8} {'desired':>8}  last decision")
    for row in view.rows:
        decided = "-"
        if row.last_decision is not None and row.decided_ago is not None:
            stale = "" if row.engine_running else ", engine stopped"
            decided = f"{row.last_decision} ({age_text(row.decided_ago)} ago{stale})"
        desired = _cell(row.desired) + ("" if row.engine_running else "*")
        click.echo(
            f"{row.queue:24} {_cell(row.due_backlog):>8} {_cell(row.workers):>8} {desired:>8}  {decided}"
        )


def _cell(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


# The Kubernetes manifests are their own module (no broker, no engine); the group carries them.
scale.add_command(manifests)
