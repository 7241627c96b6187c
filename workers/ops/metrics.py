"""Prometheus metrics of the platform's queues: ``python -m workers.ops.metrics``.

Serves the text exposition format at ``/metrics`` on ``PLATFORM_METRICS_PORT``:

- ``platform_queue_messages_ready`` / ``_unacked`` / ``platform_queue_consumers``
  for every work, retry, dead-letter and subscriber queue (management API);
- ``platform_dead_letter_oldest_age_seconds`` and
  ``platform_dead_letter_inflow_last_hour`` per dead-letter queue, from the
  dead letters' own headers (browsed without side effects; only non-empty DLQs,
  at most :data:`workers.broker.SCAN_LIMIT` each, :func:`workers.ops.dlq.summarize`);
- ``platform_consumer_lag_messages`` per consumed queue, work or subscriber
  (ready + unacked: what its consumers have not finished);
- ``platform_queue_without_consumer`` per work and subscriber queue of the
  topology: 1 when it holds ready messages and nobody consumes it (a task
  routed to a queue no worker serves), else 0; from a passive declare, exact
  and immediate, where the management API's counts lag a few seconds;
- ``platform_delayed_messages`` per delay level (label ``level``, a passive
  declare), ``platform_delayed_next_due_seconds`` (until the soonest due
  delayed task among those browsed, at most :data:`DELAY_SCAN_LIMIT`
  per level; negative when late, absent when there is none) and
  ``platform_delayed_unroutable_messages`` (due, but their queue is gone),
  :func:`workers.ops.delays.delay_stats`;
- ``platform_queue_due_backlog`` per work and subscriber queue: ready +
  unacked, the scaling signal (:mod:`workers.scaling.signal`; its retry,
  dead-letter and delay-level queues are not due work);
- ``platform_scale_desired_workers`` per work and subscriber queue: while a
  scaling engine runs (``celery -A config scale run``; its last decisions are
  live in the state store, :mod:`workers.ops.scale_state`), what the engine
  decided; otherwise advice: what the scaling policy
  (:func:`workers.scaling.policy.decide`) asks for, with the queue's consumers
  as its current workers (the server keeps each queue's history between
  scrapes, so the stabilisation window holds, but records no action, so no
  cooldown applies). ``platform_scale_engine_running`` says which (1: the engine's);
- ``platform_scale_workers``, ``platform_scale_actions_total`` (label
  ``direction``: up, down) and ``platform_scale_worker_restarts_total`` per
  queue an engine scales: its pool's size, the engine's actions since it
  started, and workers that died and were started again;
- ``platform_sagas`` per saga state (label ``state``),
  ``platform_saga_oldest_running_age_seconds`` (0 when none runs),
  ``platform_sagas_stuck`` (running longer than ``PLATFORM_SAGA_STUCK_AFTER``)
  and ``platform_sagas_compensation_failed``, from the state store
  (:func:`workers.ops.sagas.summarize_sagas`); absent while no saga ever ran;
- ``platform_metrics_up``: 1 when the broker and its management API answered.

Inflow is counted from ``x-last-failed-at``: dead letters that entered the DLQ
in the last hour and are still there (a replay or purge lowers it). The alert
rules in compose/prometheus/alerts.yml use these names.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from amqp.exceptions import AMQPError
from kombu.exceptions import OperationalError

from config.app import platform_config
from config.tls import https_context
from workers.broker import QueueDepth, masked_text, queue_depth, settings_connection
from workers.delivery.idempotency import open_store
from workers.delivery.lateness import BUCKETS, LatenessHistogram, read_lateness
from workers.ops import delays, dlq, sagas
from workers.ops.queue_stats import (
    DEAD_LETTER,
    INTERNAL,
    SUBSCRIBER,
    WORK,
    ManagementError,
    QueueStat,
    fetch_queues,
    queue_stats,
    vhost_of,
)
from workers.ops.scale_state import ScaleRecord, live_decisions
from workers.sagas.definition import COMPENSATION_FAILED
from workers.scaling.limits import limits_for
from workers.scaling.policy import History, decide
from workers.scaling.signal import CountsSource, QueueSignal, SignalUnavailable, queue_signals

if TYPE_CHECKING:
    from config.settings import Settings
    from config.topology import Topology

logger = logging.getLogger(__name__)

#: Delayed messages browsed per level for the next-due time. Browsing holds a
#: level's head for as long as it takes, which delays it that long: a scrape
#: reads only the first few of each level.
DELAY_SCAN_LIMIT = 100

#: name -> (type, help) of every series served.
METRICS: Mapping[str, tuple[str, str]] = {
    "platform_queue_messages_ready": ("gauge", "Messages ready for delivery in the queue."),
    "platform_queue_messages_unacked": ("gauge", "Messages delivered and not yet acknowledged."),
    "platform_queue_consumers": ("gauge", "Consumers of the queue."),
    "platform_dead_letter_oldest_age_seconds": (
        "gauge",
        "Age of the oldest dead letter in the DLQ (0 when empty).",
    ),
    "platform_dead_letter_inflow_last_hour": (
        "gauge",
        "Dead letters that entered the DLQ in the last hour and are still there.",
    ),
    "platform_consumer_lag_messages": (
        "gauge",
        "Messages the consumers of a work or subscriber queue have not finished (ready + unacked).",
    ),
    "platform_queue_without_consumer": (
        "gauge",
        "1 when a work or subscriber queue holds ready messages and has no consumer, else 0.",
    ),
    "platform_delayed_messages": ("gauge", "Delayed tasks waiting in the delay level."),
    "platform_delayed_next_due_seconds": (
        "gauge",
        "Seconds until the soonest due delayed task among those browsed (negative when late).",
    ),
    "platform_delay_lateness_seconds": (
        "histogram",
        "Time from a delayed task's due time to its receipt by a worker (all workers, since they started).",
    ),
    "platform_delayed_unroutable_messages": (
        "gauge",
        "Delayed tasks that came due for a queue that no longer exists (platform.delayed.unroutable).",
    ),
    "platform_queue_due_backlog": (
        "gauge",
        "Ready + unacked messages of a work or subscriber queue: its due work (retry, DLQ and delay queues apart).",
    ),
    "platform_scale_desired_workers": (
        "gauge",
        "Workers the scaling engine decided (platform_scale_engine_running 1), else the policy's advice from the consumers.",
    ),
    "platform_scale_engine_running": (
        "gauge",
        "1 when a scaling engine decides this queue's pool (its decisions are live), else 0 (advice only).",
    ),
    "platform_scale_workers": ("gauge", "Workers the scaling engine's pool runs for the queue."),
    "platform_scale_actions_total": (
        "counter",
        "Resizes the scaling engine made since it started, by direction (up, down).",
    ),
    "platform_scale_worker_restarts_total": (
        "counter",
        "Workers of the queue's pool that exited on their own and were started again.",
    ),
    "platform_sagas": ("gauge", "Sagas in each state (from the state store)."),
    "platform_saga_oldest_running_age_seconds": (
        "gauge",
        "Age of the oldest saga that has not ended (0: none).",
    ),
    "platform_sagas_stuck": ("gauge", "Running sagas older than PLATFORM_SAGA_STUCK_AFTER."),
    "platform_sagas_compensation_failed": ("gauge", "Sagas whose compensation was dead-lettered."),
    "platform_metrics_up": ("gauge", "1 when the broker and its management API answered this scrape."),
}

#: Content type of the Prometheus text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Sample:
    """One value of one series."""

    name: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def queue_samples(stats: Iterable[QueueStat]) -> list[Sample]:
    """Depth, unacked, consumers (and lag for subscriber queues) of every platform queue."""
    samples = []
    for stat in stats:
        if stat.kind == INTERNAL:
            continue
        labels = {"queue": stat.name, "kind": stat.kind, "work_queue": stat.work_queue}
        samples += [
            Sample("platform_queue_messages_ready", stat.ready, labels),
            Sample("platform_queue_messages_unacked", stat.unacked, labels),
            Sample("platform_queue_consumers", stat.consumers, labels),
        ]
        if stat.kind in (WORK, SUBSCRIBER):
            samples.append(
                Sample("platform_consumer_lag_messages", stat.ready + stat.unacked, {"queue": stat.name})
            )
    return samples


def without_consumer_samples(depths: Iterable[QueueDepth]) -> list[Sample]:
    """1 for each queue with ready messages and no consumer, 0 for the others (pure)."""
    return [
        Sample(
            "platform_queue_without_consumer",
            1 if depth.messages > 0 and depth.consumers == 0 else 0,
            {"queue": depth.name},
        )
        for depth in depths
    ]


def dead_letter_samples(stats: dlq.DlqStats) -> list[Sample]:
    """Oldest age and inflow of one DLQ."""
    labels = {"queue": stats.dead_letter_queue, "work_queue": stats.queue}
    return [
        Sample("platform_dead_letter_oldest_age_seconds", stats.oldest_age_seconds or 0.0, labels),
        Sample("platform_dead_letter_inflow_last_hour", stats.inflow_last_hour, labels),
    ]


def delay_samples(stats: delays.DelayStats, now: datetime) -> list[Sample]:
    """Depth per delay level, seconds until the next due (if any), and the unroutable catch-all's depth.

    A level or catch-all that does not exist gives no sample.
    """
    samples = [
        Sample("platform_delayed_messages", level.messages, {"level": str(level.level)})
        for level in sorted(stats.levels, key=lambda level: level.level)
        if level.messages is not None
    ]
    next_due = stats.next_due_seconds(now)
    if next_due is not None:
        samples.append(Sample("platform_delayed_next_due_seconds", next_due))
    if stats.unroutable is not None:
        samples.append(Sample("platform_delayed_unroutable_messages", stats.unroutable))
    return samples


def due_backlog_samples(signals: Iterable[QueueSignal]) -> list[Sample]:
    """The due backlog (ready + unacked) of each work and subscriber queue (pure)."""
    return [
        Sample("platform_queue_due_backlog", signal.due_backlog, {"queue": signal.queue})
        for signal in signals
    ]


def desired_worker_samples(
    signals: Iterable[QueueSignal],
    settings: Settings,
    histories: MutableMapping[str, History],
    now: datetime,
    decisions: Mapping[str, ScaleRecord] | None = None,
) -> list[Sample]:
    """The desired workers per queue: the engine's decision where one is live, else the policy's advice.

    Args:
        signals: each queue's signal, with the delayed work falling due.
        settings: the scale settings (``PLATFORM_SCALE_*``).
        histories: each queue's history from the previous scrapes; replaced by
            this scrape's (samples only: nothing acted, so no action is recorded).
        now: the scrape's time.
        decisions: the engine's live decisions by queue (:func:`workers.ops.scale_state.live_decisions`).
    """
    decisions = decisions or {}
    samples = []
    for signal in signals:
        history = histories.get(signal.queue, History())
        decision = decide(
            signal, signal.consumers, limits_for(settings, signal.queue), history, now.timestamp()
        )
        histories[signal.queue] = decision.history
        labels = {"queue": signal.queue}
        record = decisions.get(signal.queue)
        if record is None:
            logger.debug("scaling advice for %s: %s", signal.queue, decision.reason)
            samples += [
                Sample("platform_scale_desired_workers", decision.desired, labels),
                Sample("platform_scale_engine_running", 0, labels),
            ]
            continue
        report = record.report
        samples += [
            Sample("platform_scale_desired_workers", report.desired, labels),
            Sample("platform_scale_engine_running", 1, labels),
            Sample("platform_scale_workers", report.workers, labels),
            Sample("platform_scale_actions_total", report.actions_up, {**labels, "direction": "up"}),
            Sample("platform_scale_actions_total", report.actions_down, {**labels, "direction": "down"}),
            Sample("platform_scale_worker_restarts_total", record.restarts, labels),
        ]
    return samples


def engine_decisions(settings: Settings) -> dict[str, ScaleRecord]:
    """The scaling engine's live decisions by queue; none when the state store can't be read."""
    try:
        return live_decisions(settings.state_url, settings.scale_interval)
    except Exception as exc:  # noqa: BLE001 - the state store is optional for metrics
        logger.warning("metrics: scaling decisions not read from the state store: %s", exc)
        return {}


def management_counts(settings: Settings, topology: Topology) -> CountsSource:
    """A reader of every queue's counts from the management API, for :func:`workers.scaling.signal.read_signals`.

    The reader raises :class:`~workers.scaling.signal.SignalUnavailable` when the
    API does not answer (the message names its host, never its password).
    """

    def read() -> list[QueueStat]:
        try:
            return queue_stats(
                fetch_queues(
                    settings.management_url, vhost_of(settings.broker_url), context=https_context(settings)
                ),
                topology,
            )
        except ManagementError as exc:
            raise SignalUnavailable(f"no scaling signal: {masked_text(str(exc))}") from exc

    return read


def lateness_samples(histogram: LatenessHistogram) -> list[Sample]:
    """The lateness histogram's cumulative buckets, sum and count."""
    name = "platform_delay_lateness_seconds"
    bounds = [_number(bound) for bound in BUCKETS] + ["+Inf"]
    return [
        *(
            Sample(f"{name}_bucket", count, {"le": bound})
            for bound, count in zip(bounds, histogram.counts, strict=True)
        ),
        Sample(f"{name}_sum", histogram.total),
        Sample(f"{name}_count", histogram.observations),
    ]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(samples: Sequence[Sample]) -> str:
    """The Prometheus text exposition of ``samples``, grouped by series (pure)."""
    lines = []
    for name, (kind, help_text) in METRICS.items():
        names = {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
        series = [sample for sample in samples if sample.name in names]
        if not series:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for sample in series:
            labels = ",".join(
                f'{key}="{_escape(str(value))}"' for key, value in sorted(sample.labels.items())
            )
            lines.append(
                f"{sample.name}{{{labels}}} {_number(sample.value)}"
                if labels
                else f"{sample.name} {_number(sample.value)}"
            )
    return "\n".join(lines) + "\n"


def collect(
    settings: Settings,
    topology: Topology,
    now: datetime | None = None,
    histories: MutableMapping[str, History] | None = None,
) -> list[Sample]:
    """Every sample, read from the management API and the DLQs' headers now.

    ``histories`` carries each queue's scaling history from one scrape to the
    next (updated in place); without it the policy sees this scrape alone.
    """
    now = now or datetime.now(UTC)
    histories = {} if histories is None else histories
    samples: list[Sample] = []
    try:
        stats = queue_stats(
            fetch_queues(
                settings.management_url, vhost_of(settings.broker_url), context=https_context(settings)
            ),
            topology,
        )
        samples += queue_samples(stats)
        samples += due_backlog_samples(queue_signals(stats, topology.names).values())
        with settings_connection(settings) as connection:
            depths = (queue_depth(connection, name) for name in topology.names)
            samples += without_consumer_samples(depth for depth in depths if depth is not None)
            for stat in stats:
                if stat.kind != DEAD_LETTER or stat.work_queue not in topology:
                    continue
                if stat.ready + stat.unacked == 0:
                    samples += dead_letter_samples(dlq.dlq_stats(stat.work_queue, [], now))
                else:
                    samples += dead_letter_samples(dlq.summarize(connection, stat.work_queue, now))
            delayed = delays.delay_stats(connection, scan_limit=DELAY_SCAN_LIMIT)
            samples += delay_samples(delayed, now)
        signals = queue_signals(stats, topology.names, delayed.next_due_seconds(now))
        samples += desired_worker_samples(
            signals.values(), settings, histories, now, engine_decisions(settings)
        )
    except (ManagementError, OperationalError, OSError, AMQPError, dlq.UnknownQueue) as exc:
        logger.warning("metrics: %s", exc)
        samples.append(Sample("platform_metrics_up", 0))
        return samples + saga_store_samples(settings, now)  # the state store answers without the broker
    samples.append(Sample("platform_metrics_up", 1))
    try:
        samples += lateness_samples(read_lateness(settings.state_url))
    except Exception as exc:  # noqa: BLE001 - the state store is optional for metrics
        logger.warning("metrics: delay lateness not read from the state store: %s", exc)
    return samples + saga_store_samples(settings, now)


def saga_store_samples(settings: Settings, now: datetime) -> list[Sample]:
    """The saga series from the state store (none when it can't be read or no saga ever ran)."""
    try:
        summary = sagas.summarize_sagas(
            open_store(settings.state_url), now.timestamp(), settings.saga_stuck_after
        )
    except Exception as exc:  # noqa: BLE001 - the state store is optional for metrics
        logger.warning("metrics: sagas not read from the state store: %s", exc)
        return []
    return [] if summary is None else saga_samples(summary, now.timestamp())


def saga_samples(summary: sagas.SagaSummary, now: float) -> list[Sample]:
    """The saga series of one summary."""
    samples = [
        Sample("platform_sagas", count, {"state": state}) for state, count in sorted(summary.by_state.items())
    ]
    oldest = summary.oldest_running_started
    samples.append(
        Sample("platform_saga_oldest_running_age_seconds", 0.0 if oldest is None else max(now - oldest, 0.0))
    )
    samples.append(Sample("platform_sagas_stuck", summary.stuck))
    samples.append(Sample("platform_sagas_compensation_failed", summary.by_state.get(COMPENSATION_FAILED, 0)))
    return samples


def make_handler(settings: Settings, topology: Topology) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``/metrics`` for these settings.

    Its scrapes share each queue's scaling history, and take turns (a lock), so
    that one scrape's history is the next one's.
    """
    histories: dict[str, History] = {}
    turn = threading.Lock()

    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            with turn:
                body = render(collect(settings, topology, histories=histories)).encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

    return MetricsHandler


def main(argv: Sequence[str] | None = None) -> int:
    """Serve ``/metrics`` until interrupted."""
    from config.app import create_app
    from config.settings import SettingsError, load_settings

    parser = argparse.ArgumentParser(
        prog="python -m workers.ops.metrics", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: PLATFORM_METRICS_PORT)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    topology = platform_config(create_app(settings, main="metrics")).topology
    server = ThreadingHTTPServer(
        (args.address, args.port or settings.metrics_port), make_handler(settings, topology)
    )
    logger.info("metrics at http://%s:%s/metrics", *server.server_address[:2])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
