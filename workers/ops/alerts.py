"""Alerts without Prometheus: ``python -m workers.ops.alerts`` posts to a Slack-compatible webhook.

Every ``PLATFORM_ALERT_INTERVAL`` seconds it looks at every queue and alerts when

- a DLQ goes from empty to non-empty (``dlq-not-empty``),
- more than ``PLATFORM_ALERT_DLQ_INFLOW_PER_HOUR`` dead letters entered a DLQ
  in the last hour (``dlq-inflow``),
- a work or subscriber queue holds more than ``PLATFORM_ALERT_QUEUE_DEPTH``
  ready messages (``queue-depth``),
- a work or subscriber queue has held ready messages with no consumer for
  ``PLATFORM_ALERT_NO_CONSUMER_AFTER`` seconds (``no-consumer``): tasks routed
  to a queue no worker serves. Counted from the first check that saw it, so
  with checks every ``PLATFORM_ALERT_INTERVAL`` seconds it fires at most one
  interval late; consumers and ready messages come from a passive declare
  (exact, where the management API lags a few seconds).

Each message says which queue, how many, the DLQ's top error group and links
to Flower's DLQ page (``PLATFORM_FLOWER_URL``). A condition that still holds is
not repeated before ``PLATFORM_ALERT_REPEAT_AFTER`` seconds; once it clears, its
next occurrence alerts at once. A condition already true when the runner starts
counts as new. A webhook that fails is tried again at the next check.

:func:`decide` is pure (views, state, time in; alerts and the new state out),
as is :func:`hold_times` (how long each queue has gone without a consumer);
:func:`gather` reads the views, :func:`check` decides and posts, :func:`run` loops.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError

from config.app import platform_config
from config.tls import https_context
from workers.broker import queue_depth, settings_connection
from workers.ops import dlq
from workers.ops.queue_stats import (
    DEAD_LETTER,
    SUBSCRIBER,
    WORK,
    ManagementError,
    fetch_queues,
    queue_stats,
    vhost_of,
)

if TYPE_CHECKING:
    from config.settings import Settings
    from config.topology import Topology

logger = logging.getLogger(__name__)

DLQ_NOT_EMPTY = "dlq-not-empty"
DLQ_INFLOW = "dlq-inflow"
QUEUE_DEPTH = "queue-depth"
NO_CONSUMER = "no-consumer"

#: (kind, queue): one condition of one queue.
Key = tuple[str, str]


@dataclass(frozen=True)
class QueueView:
    """What the alerts look at for one work queue (or subscriber queue)."""

    queue: str
    #: Ready messages in the queue itself.
    depth: int
    #: Messages in its DLQ (ready + unacked); 0 when it has none.
    dead_letters: int = 0
    #: Dead letters that entered the DLQ in the last hour.
    inflow_last_hour: int = 0
    top_group: dlq.ErrorGroup | None = None
    #: Consumers of the queue; None when unknown (then no no-consumer alert).
    consumers: int | None = None
    #: Seconds the queue has held ready messages with no consumer (:func:`hold_times`).
    without_consumer_for: float = 0.0


@dataclass(frozen=True)
class Rules:
    """Thresholds and timing (from the settings)."""

    inflow_per_hour: int
    queue_depth: int
    repeat_after: float
    flower_url: str
    #: Seconds a queue may hold ready messages with no consumer before it alerts.
    no_consumer_after: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        return cls(
            settings.alert_dlq_inflow_per_hour,
            settings.alert_queue_depth,
            settings.alert_repeat_after,
            settings.flower_url,
            settings.alert_no_consumer_after,
        )


@dataclass(frozen=True)
class Alert:
    """One message to post."""

    kind: str
    queue: str
    count: int
    text: str

    @property
    def key(self) -> Key:
        return (self.kind, self.queue)

    def payload(self) -> dict[str, str]:
        """The webhook body: Slack's ``text`` field (Mattermost and others read it too)."""
        return {"text": self.text}


def _group_text(group: dlq.ErrorGroup | None) -> str:
    if group is None:
        return "top error group: unknown"
    return (
        f"top error group: {group.task_name or '?'} · {group.error_type or '?'} "
        f"({group.count}, group {group.id}): {group.sample_message[:200]}"
    )


def conditions(views: Iterable[QueueView], rules: Rules) -> list[Alert]:
    """Every alert condition that holds now, with its message (pure)."""
    alerts = []
    base = rules.flower_url.rstrip("/")
    for view in views:
        link = f"{base}/dlq/{view.queue}"
        if view.dead_letters > 0:
            alerts.append(
                Alert(
                    DLQ_NOT_EMPTY,
                    view.queue,
                    view.dead_letters,
                    f":rotating_light: {view.queue}.dlq is no longer empty: {view.dead_letters} dead letters; "
                    f"{_group_text(view.top_group)}. <{link}|Open the DLQ page> {link}",
                )
            )
        if view.inflow_last_hour > rules.inflow_per_hour:
            alerts.append(
                Alert(
                    DLQ_INFLOW,
                    view.queue,
                    view.inflow_last_hour,
                    f":warning: {view.inflow_last_hour} dead letters entered {view.queue}.dlq in the last hour "
                    f"(more than {rules.inflow_per_hour}); {view.dead_letters} in it now; "
                    f"{_group_text(view.top_group)}. <{link}|Open the DLQ page> {link}",
                )
            )
        if view.depth > rules.queue_depth:
            alerts.append(
                Alert(
                    QUEUE_DEPTH,
                    view.queue,
                    view.depth,
                    f":hourglass: {view.queue} holds {view.depth} ready messages (more than {rules.queue_depth}); "
                    f"consumers are not keeping up. {base}/broker",
                )
            )
        if _without_consumer(view) and view.without_consumer_for >= rules.no_consumer_after:
            alerts.append(
                Alert(
                    NO_CONSUMER,
                    view.queue,
                    view.depth,
                    f":no_entry: {view.queue} has {view.depth} ready messages and no consumer "
                    f"(for {view.without_consumer_for:.0f}s): no worker takes its tasks. Start one "
                    f"(`celery -A config worker -Q {view.queue}`; `make up` runs one per queue) or "
                    f"route the tasks elsewhere (PLATFORM_QUEUES). {base}/broker",
                )
            )
    return alerts


def _without_consumer(view: QueueView) -> bool:
    return view.consumers == 0 and view.depth > 0


def hold_times(
    views: Iterable[QueueView], since: Mapping[str, float], now: float
) -> tuple[list[QueueView], dict[str, float]]:
    """The views with how long each queue has had ready messages and no consumer (pure).

    Args:
        views: the queues as they are now.
        since: for each queue without a consumer at the last check, when that was first seen.
        now: the current time (same clock as ``since``).

    Returns:
        The views with ``without_consumer_for`` set, and ``since`` for the next
        check (a queue that got a consumer or emptied is forgotten).
    """
    timed, kept = [], {}
    for view in views:
        if _without_consumer(view):
            kept[view.queue] = since.get(view.queue, now)
            view = replace(view, without_consumer_for=now - kept[view.queue])
        timed.append(view)
    return timed, kept


def decide(
    views: Iterable[QueueView], state: Mapping[Key, float], now: float, rules: Rules
) -> tuple[list[Alert], dict[Key, float]]:
    """Which alerts to send now, and the state to keep for the next check (pure).

    Args:
        views: the queues as they are now.
        state: for each condition alerted on and still holding, when it was last sent.
        now: the current time (seconds, any monotonic origin).
        rules: thresholds and the repeat interval.

    Returns:
        The alerts due (new conditions, and held ones last sent at least
        ``repeat_after`` ago) and the new state; conditions that no longer hold
        are forgotten, so they alert at once when they come back.
    """
    due, kept = [], {}
    for alert in conditions(views, rules):
        last = state.get(alert.key)
        if last is None or now - last >= rules.repeat_after:
            due.append(alert)
            kept[alert.key] = now
        else:
            kept[alert.key] = last
    return due, kept


def gather(settings: Settings, topology: Topology, now: datetime | None = None) -> list[QueueView]:
    """The views of every work and subscriber queue, from the management API and DLQ headers.

    Raises:
        ManagementError: the management API did not answer.
    """
    now = now or datetime.now(UTC)
    stats = queue_stats(
        fetch_queues(settings.management_url, vhost_of(settings.broker_url), context=https_context(settings)),
        topology,
    )
    dead = {s.work_queue: s.ready + s.unacked for s in stats if s.kind == DEAD_LETTER}
    views = []
    with settings_connection(settings) as connection:
        for stat in stats:
            if stat.kind not in (WORK, SUBSCRIBER):
                continue
            count = dead.get(stat.name, 0)
            summary = dlq.summarize(connection, stat.name, now) if count else None
            # Exact and immediate, where the management API's counts lag.
            exact = queue_depth(connection, stat.name) if stat.name in topology else None
            views.append(
                QueueView(
                    queue=stat.name,
                    depth=exact.messages if exact else stat.ready,
                    dead_letters=count,
                    inflow_last_hour=summary.inflow_last_hour if summary else 0,
                    top_group=summary.groups[0] if summary and summary.groups else None,
                    consumers=exact.consumers if exact else None,
                )
            )
    return views


def post_webhook(url: str, alert: Alert, timeout: float = 10.0) -> None:
    """POST ``alert`` as JSON to ``url``.

    Raises:
        OSError: the webhook could not be reached or answered with an error.
    """
    request = urllib.request.Request(
        url,
        data=json.dumps(alert.payload()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def check(
    views: Sequence[QueueView],
    state: Mapping[Key, float],
    now: float,
    rules: Rules,
    send: Callable[[Alert], None],
) -> dict[Key, float]:
    """Decide and send; an alert whose sending failed stays due for the next check.

    Returns:
        The state for the next check.
    """
    due, kept = decide(views, state, now, rules)
    for alert in due:
        try:
            send(alert)
        except OSError as exc:
            logger.error("alert %s for %s not delivered, will retry: %s", alert.kind, alert.queue, exc)
            if alert.key in state:
                kept[alert.key] = state[alert.key]
            else:
                kept.pop(alert.key, None)
            continue
        logger.warning("alert sent: %s", alert.text)
    return kept


def run(settings: Settings, topology: Topology, checks: int | None = None) -> None:
    """Check every ``alert_interval`` seconds (``checks`` times, or forever)."""
    rules = Rules.from_settings(settings)
    url = settings.alert_webhook_url
    state: dict[Key, float] = {}
    since: dict[str, float] = {}
    done = 0
    while checks is None or done < checks:
        started = time.monotonic()
        try:
            views = gather(settings, topology)
        except (ManagementError, OperationalError, OSError, AMQPError, dlq.UnknownQueue) as exc:
            logger.error("alert check failed: %s", exc)
        else:
            views, since = hold_times(views, since, started)
            state = check(views, state, started, rules, lambda alert: post_webhook(url, alert))
            logger.info("alert check done: %d queues, %d conditions holding", len(views), len(state))
        done += 1
        if checks is None or done < checks:
            time.sleep(max(0.0, settings.alert_interval - (time.monotonic() - started)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the alert checks until interrupted (``--once`` for a single check)."""
    from config.app import create_app
    from config.settings import SettingsError, load_settings

    parser = argparse.ArgumentParser(prog="python -m workers.ops.alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="check once and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not settings.alert_webhook_url:
        print(
            "error: PLATFORM_ALERT_WEBHOOK_URL is not set; there is nowhere to send alerts", file=sys.stderr
        )
        return 2
    topology = platform_config(create_app(settings, main="alerts")).topology
    try:
        run(settings, topology, checks=1 if args.once else None)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
